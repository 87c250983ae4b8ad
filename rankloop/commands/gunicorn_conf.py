"""gunicorn settings for the coordinator's web tier, shipped in the package.

``rankloop serve`` reads this file by default; a plain gunicorn reads it as a module, so it
works the same from a wheel install (the image, the cluster manifest) and from a checkout::

    gunicorn -c python:rankloop.commands.gunicorn_conf 'rankloop.commands.web:create_web_app()'

(``infra/gunicorn.conf.py`` only imports this module, for ``gunicorn -c infra/gunicorn.conf.py``.)
Every setting can be overridden from the environment (``GUNICORN_*`` below) so that the same
file serves a laptop, the compose stack and a cluster. The app is stateless: scale it by adding
processes or pods; PostgreSQL, Redis and the object store hold all state.
"""

import glob
import multiprocessing
import os
import tempfile

# What gunicorn reads (infra/gunicorn.conf.py re-exports these with `import *`).
__all__ = [
    "accesslog",
    "bind",
    "child_exit",
    "errorlog",
    "forwarded_allow_ips",
    "graceful_timeout",
    "keepalive",
    "logconfig_dict",
    "loglevel",
    "max_requests",
    "max_requests_jitter",
    "on_starting",
    "post_worker_init",
    "preload_app",
    "threads",
    "timeout",
    "worker_class",
    "worker_exit",
    "workers",
]

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Requests are short and mostly wait on PostgreSQL: a few threads per process help. Measured
# with `rankloop bench api` on 2 shared cores: gthread with keep-alive beats 2 x cores + 1 sync
# workers (these close every connection: about 15% more CPU per request); 3 x 2, 3 x 3 and
# 4 x 4 (processes x threads) could not be told apart through the noise of a shared machine.
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count()))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", 4))
# Each app process creates its app, and opens its own pools, after the fork (create_app runs
# in the worker: no connection or thread crosses a fork). The arbiter imports the app's modules
# once instead (on_starting), so a process forked to replace one that was killed or recycled
# serves within a fraction of a second: importing them took it 2-7 s, while the requests it
# would have taken waited (`rankloop bench respawn`).
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
# A recycled or stopped process finishes its requests within this, then is replaced: a request
# takes far less, and a process that lingers is one fewer serving.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 10))
keepalive = 5
# 0: processes are never recycled. When set, each one's limit gets up to half again at random,
# so that processes started together are not all replaced at the same moment.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 0))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", max_requests // 2))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def _json_logging() -> dict:
    """With ``RANKLOOP_LOG_FORMAT=json``, gunicorn's own lines (start, workers, access log) are
    JSON objects too, in the app's format (``rankloop.core.jsonlog``)."""
    from rankloop.core.settings import load_settings

    if load_settings().log_format != "json":
        return {}

    def handler(stream: str) -> dict:
        return {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}

    def logger(name: str, handler_name: str) -> dict:
        return {"level": "INFO", "handlers": [handler_name], "propagate": False,
                "qualname": name}  # fmt: skip

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "rankloop.core.jsonlog.JsonFormatter"}},
        "handlers": {"stderr": handler("ext://sys.stderr"), "stdout": handler("ext://sys.stdout")},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": logger("gunicorn.error", "stderr"),
            "gunicorn.access": logger("gunicorn.access", "stdout"),
        },
    }


logconfig_dict = _json_logging()


# Prometheus: every process counts its error responses in files of one shared directory, which
# /metrics sums (prometheus-client's multiprocess mode). Set here, before the workers fork, so
# no operator has to; PROMETHEUS_MULTIPROC_DIR set by the operator wins.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="rankloop-prometheus-")


def on_starting(server):
    # Counts left by an earlier run would be added to this one's: start with none. Only the
    # counters' files go (prometheus-client's *.db), never the directory an operator chose.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)
    # Every web process forks with the app's modules loaded (see preload_app above).
    from rankloop.commands.web import import_web_tiers

    server.log.info("imported %d modules of the web app", import_web_tiers())


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # Rounds close inside the request that completes their quorum: pay the consensus
    # engine's import cost now, not in that request.
    from service.tasks import warm_up_consensus

    warm_up_consensus()


def worker_exit(server, worker):
    """A web process that is done (recycled, stopped) leaves at once: Python's teardown of the
    app's thousand modules took it 1-2 s more, and gunicorn replaces a process only once it is
    gone, so one fewer served meanwhile. Its logs are flushed and its database connections closed
    first; the exit status is gunicorn's own (a boot error still stops the arbiter). gunicorn
    also calls this hook in the arbiter, for a worker already gone: nothing is done there."""
    import logging
    import sys

    if os.getpid() != worker.pid:
        return
    error = sys.exc_info()[1]
    code = error.code if isinstance(error, SystemExit) else (1 if error else 0)
    app = getattr(worker, "wsgi", None)
    engine = getattr(app, "extensions", {}).get("rankloop_engine")
    if engine is not None:
        engine.dispose()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
