"""The coordinator's application factory.

``create_app(test_config=None)``: defaults, then ``RANKLOOP_*`` environment variables
(``app.config.from_prefixed_env("RANKLOOP")``), then ``test_config``; then the database, the
object store, Celery, rate limits and the blueprints. Nothing is created at import time, and
nothing here imports torch, diffusers or ``gpu_worker``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, Response

from rankloop.stores import store_from_config


def default_config(var_dir: str | os.PathLike[str] = "var") -> dict[str, Any]:
    """The embedded default: everything under ``var/``, no outside service."""
    var = Path(var_dir).resolve()
    return {
        "DATABASE_URL": f"sqlite:///{var / 'rankloop.sqlite'}",
        "STORE_URL": str(var / "objects"),
        "BROKER_URL": f"sqla+sqlite:///{var / 'celery-broker.sqlite'}",
        "BROKER_TRANSPORT_OPTIONS": {},
        "RESULT_BACKEND": None,  # optional: where failed renders' exceptions can be read
        "ADMIN_TOKEN": None,
        "BASE_URL": None,  # public URL for links; the request's host when unset
        "PRESIGN_EXPIRES_S": 3600,
        "INLINE_BOOKKEEPING": True,  # close rounds in the request that brought the quorum
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_ANNOTATOR": "1200 per minute",
        "RATELIMIT_JOIN": "60 per minute",
        "RATELIMIT_ANNOTATOR_SCOPE": "process",  # or "shared": exact across processes, in the storage
        "MAX_CONTENT_LENGTH": 1 << 20,
        "JSON_SORT_KEYS": False,
    }


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(default_config(os.environ.get("RANKLOOP_VAR_DIR", "var")))
    app.config.from_prefixed_env("RANKLOOP")
    if test_config:
        app.config.from_mapping(test_config)

    from service import db, errors, limits, tasks
    from service.api import register_api

    db.init_app(app)
    app.extensions["rankloop_store"] = store_from_config(app.config)
    tasks.celery_init_app(app)
    errors.init_app(app)
    register_api(app)
    limits.init_app(app)

    from annotator_ui import ui_blueprint

    app.register_blueprint(ui_blueprint)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    # Pages set their own, stricter policy (annotator_ui); these cover the JSON API and images.
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
    return response
