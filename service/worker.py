"""Entry point of the bookkeeping worker and of beat, the coordinator's scheduler.

``celery -A service.worker worker -Q coord`` runs the bookkeeping (as many as you like);
``celery -A service.worker beat`` runs the deadline and lost-render sweeps: run exactly one
beat per deployment, as its own process (not ``worker -B``: every worker started that way
would run a beat of its own).
"""

from service.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
