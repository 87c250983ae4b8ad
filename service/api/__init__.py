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
        openapi,
        previews,
        recruitment,
        rounds,
        stream,
        studies,
        study_join,
        tasks,
    )

    for module in (
        campaigns,
        rounds,
        annotators,
        recruitment,
        studies,
        study_join,
        annotator_view,
        tasks,
        exports,
        events,
        stream,
        previews,
        openapi,
    ):
        app.register_blueprint(module.bp)
