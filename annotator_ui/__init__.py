"""The annotator task page and the owner dashboard, served by one Flask blueprint.

The pages are static shells: every piece of data reaches them through the JSON API
(``/api/...``) and is rendered by the scripts in ``static/js`` with ``textContent``, never as
HTML. Credentials never touch a cookie: the annotator token arrives in the URL fragment (so it
never reaches a server log) and the owner key is typed into the dashboard; both live in the
tab's ``sessionStorage`` and travel as ``Authorization: Bearer``. With no ambient credential
there is nothing for a cross-site request to ride on, so no CSRF token is needed.

The web app (:mod:`rankloop.commands.web`, the layer above both tiers) passes :func:`init_app`
to the coordinator's factory, which registers :data:`ui_blueprint` (no URL prefix); the
routes are ``/`` (a landing page), ``/task``, ``/dashboard``, ``/dashboard/<campaign_id>``,
``/dashboard/studies`` and ``/dashboard/study/<study_id>``; assets are under
``/ui-static/``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, render_template, request

from annotator_ui.inline_scripts import inline_script
from annotator_ui.security import add_security_headers
from rankloop.core.settings import settings_of

ui_blueprint = Blueprint(
    "ui",
    __name__,
    template_folder="templates",
    static_folder="static",
    # Not "/static": that path belongs to the application's own static folder.
    static_url_path="/ui-static",
)


@ui_blueprint.get("/")
def landing_page() -> str:
    """What this server is, for whoever opens its address: links to the console, the API
    document and the documentation (no script, no data)."""
    return render_template(
        "landing.html",
        api_root=f"{request.script_root}/api",
        docs_url=settings_of(current_app).docs_url,
    )


@ui_blueprint.get("/task")
def task_page() -> str:
    """The annotator's task page; the token is read from ``#token=...`` by ``task.js``."""
    return render_template("task.html", api_root=f"{request.script_root}/api")


@ui_blueprint.get("/dashboard")
def dashboard_page() -> str:
    """The owner's campaign list, behind the owner key typed into the page."""
    return render_template("dashboard.html", api_root=f"{request.script_root}/api")


@ui_blueprint.get("/dashboard/<campaign_id>")
def campaign_page(campaign_id: str) -> str:
    """One campaign: rounds, consensus, progress plot, annotators and controls."""
    return render_template(
        "campaign.html", api_root=f"{request.script_root}/api", campaign_id=campaign_id
    )


@ui_blueprint.get("/dashboard/studies")
def studies_page() -> str:
    """The owner's studies, and the form that makes one from a prompt list."""
    return render_template("studies.html", api_root=f"{request.script_root}/api")


@ui_blueprint.get("/dashboard/study/<study_id>")
def study_page(study_id: str) -> str:
    """One study: its prompts' progress at a glance, its link, costs and controls."""
    return render_template("study.html", api_root=f"{request.script_root}/api", study_id=study_id)


@ui_blueprint.context_processor
def _template_helpers() -> dict[str, object]:
    return {"inline_script": inline_script}


@ui_blueprint.after_request
def _secure(response: Response) -> Response:
    return add_security_headers(response)


def init_app(app: Flask) -> None:
    """Serve the pages from ``app`` (:func:`rankloop.commands.web.create_web_app` passes this
    to the coordinator's ``create_app``)."""
    app.register_blueprint(ui_blueprint)


__all__ = ["init_app", "ui_blueprint"]
