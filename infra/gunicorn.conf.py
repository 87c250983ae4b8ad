"""gunicorn settings for the coordinator's web tier.

    gunicorn -c infra/gunicorn.conf.py 'service.app:create_app()'

Every setting can be overridden from the environment (``GUNICORN_*`` below) so that the same
file serves a laptop, the compose stack and a cluster. The app is stateless: scale it by adding
processes or pods; PostgreSQL, Redis and the object store hold all state.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Requests are short and mostly wait on PostgreSQL: a few threads per process help. Measured
# with `rankloop bench api` on 2 shared cores: gthread with keep-alive beats 2 x cores + 1 sync
# workers (these close every connection: about 15% more CPU per request); 3 x 2, 3 x 3 and
# 4 x 4 (processes x threads) could not be told apart through the noise of a shared machine.
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count()))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", 4))
# Each app process opens its own pool after the fork (create_app runs in the worker).
# Preloading would only save start-up time and memory, not CPU per request.
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 20
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 0))
max_requests_jitter = 100
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker):
    # Rounds close inside the request that completes their quorum: pay the consensus
    # engine's import cost now, not in that request.
    from service.tasks import warm_up_consensus

    warm_up_consensus()
