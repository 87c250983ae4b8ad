"""The web application as it is deployed: the coordinator with its pages.

The coordinator (``service``) and the pages (``annotator_ui``) are tiers that never import each
other; this is the one place above both that puts them together. Every server runs this app:
``rankloop serve``, ``rankloop up`` and a plain gunicorn
(``gunicorn -c python:rankloop.commands.gunicorn_conf 'rankloop.commands.web:create_web_app()'``).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from flask import Flask

# The tiers' modules that are no part of the web app: the bookkeeping worker's entry point
# creates an app of its own at import, and Alembic's environment runs only under Alembic.
NOT_WEB = ("service.worker", "service.migrations")
# What the app imports only when it is created or first serves, as its settings say (the
# broker's and the store's clients, the database driver, the consensus engine's solver): also
# imported in the arbiter, where installed.
LAZY_LIBRARIES = ("numpy", "scipy.optimize", "celery", "kombu.transport.redis", "redis",
                  "psycopg", "boto3", "botocore.client", "flask_limiter", "prometheus_client")  # fmt: skip


def create_web_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The coordinator's app (:func:`service.app.create_app`) serving the task page and the
    owner console too."""
    import annotator_ui
    from service.app import create_app

    return create_app(test_config, pages=annotator_ui.init_app)


def import_web_tiers() -> int:
    """Import every module of the coordinator and the pages (their modules create nothing at
    import: no connection, no thread), and say how many. gunicorn's arbiter calls it once
    (``rankloop/commands/gunicorn_conf.py``), so a web process it forks, at start or to replace
    one killed or recycled, finds them loaded: it serves within a fraction of a second instead
    of the seconds its imports took while its share of the requests waited."""
    modules = 0
    for name in ("service", "annotator_ui"):
        package = importlib.import_module(name)
        for found in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not found.name.startswith(NOT_WEB):
                importlib.import_module(found.name)
                modules += 1
    for library in LAZY_LIBRARIES:
        try:
            importlib.import_module(library)
        except ImportError:  # an optional driver this installation does without
            continue
        modules += 1
    return modules
