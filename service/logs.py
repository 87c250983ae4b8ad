"""Logs an operator can search: a request id on every request, and JSON lines on demand.

Every request gets an id: the ``X-Request-Id`` header a proxy or client sent (when it is a
short token), else a new one; it is echoed in the response's ``X-Request-Id``. Every log record
carries ``request_id``, ``campaign_id`` and ``round`` when they are known: from the request (the
URL's campaign) or from :func:`bind`, which the bookkeeping jobs and anything else may use for
the extent of a piece of work.

``LOG_FORMAT=json`` (``RANKLOOP_LOG_FORMAT``) writes one JSON object per line on the root
logger's handlers (``ts``, ``level``, ``logger``, ``message``, the ids, ``exc`` with the
traceback); ``text``, the default, keeps the usual lines with the ids appended when known.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from rankloop.core.jsonlog import FIELDS, JsonFormatter
from rankloop.core.settings import settings_of

HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # what is safe to log and echo as is
_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "rankloop_log_fields", default=None
)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (``campaign_id=...``, ``round=...``) to every record logged inside."""
    token = _bound.set({**(_bound.get() or {}), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


class ContextFilter(logging.Filter):
    """Put the ids on each record (``record.request_id`` ...; None when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields: dict[str, Any] = dict.fromkeys(FIELDS)
        if has_request_context():
            fields["request_id"] = g.get("request_id")
            fields["campaign_id"] = (request.view_args or {}).get("campaign_id")
        fields.update(_bound.get() or {})
        for name, value in fields.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """The usual line, with the ids that are known appended (``request_id=...``)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{name}={getattr(record, name)}"
            for name in FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{line} [{ids}]" if ids else line


def configure(log_format: str, level: int | None = None) -> None:
    """Put the filter and the formatter of ``log_format`` on the root logger's handlers (a
    stderr handler when it has none). Idempotent."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    if level is not None:
        root.setLevel(level)
    formatter: logging.Formatter = (
        JsonFormatter()
        if log_format == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        handler.setFormatter(formatter)


def _request_id() -> None:
    sent = request.headers.get(HEADER, "")
    g.request_id = sent if _VALID_ID.match(sent) else secrets.token_hex(8)


def _echo_request_id(response: Response) -> Response:
    if "request_id" in g:
        response.headers[HEADER] = g.request_id
    return response


def init_app(app: Flask) -> None:
    """Request ids on every request; the log format of ``LOG_FORMAT`` when it is json (text
    leaves the process's logging as its runner set it up: ``rankloop up``, gunicorn)."""
    app.before_request(_request_id)
    app.after_request(_echo_request_id)
    if settings_of(app).log_format == "json":
        configure("json")
