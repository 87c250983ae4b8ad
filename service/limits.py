"""Rate limits (Flask-Limiter) on the annotator and recruitment endpoints.

Generous by default (``RATELIMIT_ANNOTATOR``, ``RATELIMIT_JOIN``); counters live in memory in
the embedded default and in Redis in production (``RANKLOOP_RATELIMIT_STORAGE_URI=redis://...``),
so that every gunicorn worker shares them.
"""

from __future__ import annotations

import hashlib

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

ANNOTATOR_ENDPOINTS = ("tasks.next_task", "tasks.submit_ranking", "annotators.me")
JOIN_ENDPOINTS = ("annotators.join",)


def init_app(app: Flask) -> None:
    """One limiter per app (tests build many apps); call after the blueprints are registered."""
    limiter = Limiter(key_func=get_remote_address, app=app)
    app.extensions["rankloop_limiter"] = limiter
    for endpoint in ANNOTATOR_ENDPOINTS:
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = limiter.limit(annotator_limit, key_func=annotator_key)(view)  # type: ignore[assignment]
    for endpoint in JOIN_ENDPOINTS:
        app.view_functions[endpoint] = limiter.limit(join_limit)(app.view_functions[endpoint])  # type: ignore[assignment]


def annotator_key() -> str:
    """Per annotator token when one is sent (many annotators may share one NAT address)."""
    header = request.headers.get("Authorization", "")
    if header:
        return "tok:" + hashlib.sha256(header.encode()).hexdigest()[:24]
    return "ip:" + get_remote_address()


def annotator_limit() -> str:
    return current_app.config["RATELIMIT_ANNOTATOR"]


def join_limit() -> str:
    return current_app.config["RATELIMIT_JOIN"]
