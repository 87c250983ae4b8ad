"""Entry point of the bookkeeping worker: ``celery -A service.worker worker -Q coord -B``."""

from service.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
