"""Errors as JSON, mapped once: ``{"error": {"code", "message", "details"}}``.

A :class:`rankloop.core.errors.RankloopError` carries its own status and code; HTTP errors raised by
Flask (404 for an unknown route, 405, 413) keep theirs; anything else is a logged 500 that
reveals nothing. A database that cannot be reached (or a connection that died in the pool) is
a 503 with ``Retry-After`` on every endpoint, whether SQLAlchemy or the driver raised it (the
hot path runs some statements straight on psycopg, whose errors SQLAlchemy never wraps). A URL with a NUL byte (in its path or query) is refused before any view: no
database can store or compare it (PostgreSQL refuses NUL in text).
"""

from __future__ import annotations

import contextlib

from flask import Flask, g, request
from sqlalchemy import exc as sa
from werkzeug.exceptions import HTTPException

from rankloop.core.errors import InvalidInput, RankloopError
from service.api.responses import Error, ErrorBody, json_response
from service.db import NO_TABLES, database_unavailable_errors, missing_tables, upgrade_hint


def error_response(status: int, code: str, message: str, details=None):
    return json_response(
        Error(error=ErrorBody(code=code, message=message, details=details)), status
    )


def _drop_dead_connection() -> None:
    """Invalidate the request's connection: one that died must not go back to the pool (an
    error raised by the driver itself never told SQLAlchemy it was dead)."""
    session = g.pop("db_session", None)
    if session is not None:
        with contextlib.suppress(Exception):  # it is being thrown away either way
            session.invalidate()


def refuse_nul_bytes() -> None:
    query = [text for name, values in request.args.lists() for text in (name, *values)]
    if "\x00" in request.path or any("\x00" in text for text in query):
        raise InvalidInput("a URL may not contain NUL bytes")


def init_app(app: Flask) -> None:
    app.before_request(refuse_nul_bytes)

    @app.errorhandler(RankloopError)
    def _rankloop_error(error: RankloopError):
        response = error_response(
            error.http_status, error.code, str(error), getattr(error, "details", None)
        )
        retry_after = getattr(error, "retry_after", None)  # a 429's or a 503's: ask again then
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(error.code or 500, code, error.description or error.name)
        # The error's own headers (Allow on a 405, Retry-After on a 429), with a JSON body.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    def _database_down(error: Exception):
        app.logger.exception("database unavailable")
        _drop_dead_connection()
        message = "the database is busy or down; retry"
        if missing_tables(error):
            message = f"{NO_TABLES}: {upgrade_hint()}"
        response = error_response(503, "database_unavailable", message)
        response.headers["Retry-After"] = "2"
        return response

    for error_class in database_unavailable_errors():
        app.register_error_handler(error_class, _database_down)

    @app.errorhandler(sa.DBAPIError)
    def _database_error(error: sa.DBAPIError):
        if error.connection_invalidated or missing_tables(error):  # down, or not set up
            return _database_down(error)
        return _unexpected(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; the event was logged")
