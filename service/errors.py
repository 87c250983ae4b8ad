"""Errors as JSON, mapped once: ``{"error": {"code", "message", "details"}}``.

A :class:`rankloop.core.errors.RankloopError` carries its own status and code; HTTP errors raised by
Flask (404 for an unknown route, 405, 413) keep theirs; anything else is a logged 500 that
reveals nothing.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from rankloop.core.errors import RankloopError
from service.api.responses import Error, ErrorBody, json_response


def error_response(status: int, code: str, message: str, details=None):
    return json_response(
        Error(error=ErrorBody(code=code, message=message, details=details)), status
    )


def init_app(app: Flask) -> None:
    @app.errorhandler(RankloopError)
    def _rankloop_error(error: RankloopError):
        return error_response(
            error.http_status, error.code, str(error), getattr(error, "details", None)
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(error.code or 500, code, error.description or error.name)
        if error.code == 429:
            response.headers.update(error.get_headers())
            response.headers["Content-Type"] = "application/json"
        return response

    @app.errorhandler(OperationalError)
    def _database_down(error: OperationalError):
        app.logger.exception("database error")
        response = error_response(
            503, "database_unavailable", "the database is busy or down; retry"
        )
        response.headers["Retry-After"] = "2"
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; the event was logged")
