"""The coordinator's application factory.

``create_app(test_config=None, pages=None)``: the settings (:func:`rankloop.core.settings.load_settings`:
``RANKLOOP_*`` environment variables over the defaults, then ``test_config``, a mapping of the
same upper-case names) become the app's one typed :class:`~rankloop.core.settings.Settings`
(``service.config.app_settings()``; only Flask's own keys go to the Flask config); then the
database, the object store, Celery, rate limits, the API blueprints and, when the caller
passes them, the pages (``pages(app)``: the web app of :mod:`rankloop.commands.web` composes
``annotator_ui.init_app``; without them the coordinator serves the API alone). Nothing is
created at import time, and nothing here imports torch, diffusers, ``gpu_worker`` or
``annotator_ui``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response

from rankloop.core.settings import (
    SETTINGS_EXTENSION,
    Settings,
    load_settings,
    make_local_dirs,
)
from rankloop.stores import store_from_config
from service.json import StrictJSONProvider


def create_app(
    test_config: dict[str, Any] | None = None, pages: Callable[[Flask], None] | None = None
) -> Flask:
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)  # no NaN or Infinity in or out (service/json.py)
    settings = load_settings(overrides=test_config)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length  # Flask reads it there
    if test_config:  # keys that are no rankloop setting (TESTING, ...) go to Flask as given
        app.config.from_mapping(
            {k: v for k, v in test_config.items() if k.lower() not in Settings.model_fields}
        )
    app.extensions[SETTINGS_EXTENSION] = settings

    from service import db, errors, health, limits, logs, metrics, tasks
    from service.api import register_api

    db.init_app(app)
    app.extensions["rankloop_store"] = store_from_config(settings)
    make_local_dirs(settings)
    tasks.celery_init_app(app)
    logs.init_app(app)  # first: the request id is set before any other hook may log
    errors.init_app(app)
    register_api(app)
    health.init_app(app)
    metrics.init_app(app)
    limits.init_app(app)

    # The pages are a tier of their own: the layer above composes them (this tier never
    # imports them).
    if pages is not None:
        pages(app)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    # Pages set their own, stricter policy (annotator_ui); these cover the JSON API and images.
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
    # A response that lets a site frame it says so in its own CSP (/join and /task, for MTurk's
    # frame); X-Frame-Options cannot name a site, so it is left out there and DENY elsewhere.
    if "frame-ancestors 'none'" in headers["Content-Security-Policy"]:
        headers.setdefault("X-Frame-Options", "DENY")
    return response
