"""The JSON API, one blueprint per resource; the document is served at ``/api/openapi.json``."""

from __future__ import annotations

from flask import Flask


def register_api(app: Flask) -> None:
    from service.api import (
        annotator_view,
        annotators,
        campaigns,
        events,
        exports,
        image_sets,
        openapi,
        previews,
        recruitment,
        rounds,
        stream,
        tasks,
    )

    for module in (
        campaigns,
        rounds,
        annotators,
        recruitment,
        annotator_view,
        tasks,
        exports,
        image_sets,
        events,
        stream,
        previews,
        openapi,
    ):
        app.register_blueprint(module.bp)
