"""The annotator task page and the owner dashboard, served by one Flask blueprint.

Placeholder until the UI issue lands: the coordinator registers ``ui_blueprint``.
"""

from flask import Blueprint

ui_blueprint = Blueprint("ui", __name__, template_folder="templates", static_folder="static")
