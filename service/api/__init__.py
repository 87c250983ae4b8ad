"""The JSON API, one blueprint per resource; the document is served at ``/api/openapi.json``."""

from __future__ import annotations

from flask import Flask


def register_api(app: Flask) -> None:
    from service.api import annotators, campaigns, exports, openapi, tasks

    for module in (campaigns, annotators, tasks, exports, openapi):
        app.register_blueprint(module.bp)
