"""The web application as it is deployed: the coordinator with its pages.

The coordinator (``service``) and the pages (``annotator_ui``) are tiers that never import each
other; this is the one place above both that puts them together. Every server runs this app:
``rankloop serve``, ``rankloop up`` and a plain gunicorn
(``gunicorn -c python:rankloop.commands.gunicorn_conf 'rankloop.commands.web:create_web_app()'``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_web_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The coordinator's app (:func:`service.app.create_app`) serving the task page and the
    owner console too."""
    import annotator_ui
    from service.app import create_app

    return create_app(test_config, pages=annotator_ui.init_app)
