"""The JSON API, one blueprint per resource; the document is served at ``/api/openapi.json``."""

from __future__ import annotations

from flask import Flask


def register_api(app: Flask) -> None:
    from service.api import (
        annotator_view,
        annotators,
        campaigns,
        estimate,
        events,
        exports,
        image_sets,
        improvement,
        me,
        openapi,
        previews,
        recruitment,
        rounds,
        stream,
        studies,
        study_join,
        tasks,
        verdict,
    )

    for module in (
        campaigns,
        verdict,
        improvement,
        rounds,
        annotators,
        recruitment,
        me,
        studies,
        study_join,
        annotator_view,
        tasks,
        exports,
        estimate,
        image_sets,
        events,
        stream,
        previews,
        openapi,
    ):
        app.register_blueprint(module.bp)
