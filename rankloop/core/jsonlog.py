"""Log records as one JSON object per line (``RANKLOOP_LOG_FORMAT=json``), for every process:
the coordinator (``service.logs``), gunicorn (``rankloop/commands/gunicorn_conf.py``) and the
render workers (``gpu_worker.celery_app``). Standard library only."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# The ids a record may carry (set by service.logs.ContextFilter, or passed in ``extra``).
FIELDS = ("request_id", "campaign_id", "round")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


JsonFormatter.converter = time.gmtime  # timestamps in UTC, as the "Z" says


def use_json(logger: logging.Logger) -> None:
    """Give every handler of ``logger`` the JSON format."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


__all__ = ["FIELDS", "JsonFormatter", "use_json"]
