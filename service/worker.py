"""Entry point of the bookkeeping worker and of beat, the coordinator's scheduler.

``celery -A service.worker worker -Q coord`` runs the bookkeeping (as many as you like);
``celery -A service.worker beat`` runs the deadline and lost-render sweeps: run exactly one
beat per deployment, as its own process (not ``worker -B``: every worker started that way
would run a beat of its own).

The database pool pings each connection before use here (a job that ran on a connection that
died with a PostgreSQL restart would fail, be acknowledged and be lost), and the process says
at start which database, broker and store it uses (:func:`rankloop.core.startup.announce`).
"""

from celery.signals import after_setup_logger

from rankloop.core.startup import announce
from service import logs
from service.app import create_app
from service.config import settings_of

flask_app = create_app({"DATABASE_PRE_PING": True})
celery_app = flask_app.extensions["celery"]
announce("rankloop bookkeeping worker / beat", settings_of(flask_app))


@after_setup_logger.connect(weak=False)
def _log_format(**_: object) -> None:
    # Celery sets up its own handlers: give them the ids and the format of LOG_FORMAT.
    logs.configure(settings_of(flask_app).log_format)
