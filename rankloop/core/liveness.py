"""Render workers' own heartbeats: who listens where, so that a coordinator can tell when its
render messages go to a queue no render worker reads.

Each render worker rewrites ``workers/<hostname>.json`` in the object store every
``WORKER_BEAT_EVERY_S``: its name, when, and the route it consumes from (:func:`render_route`:
the broker's transport and database, the key prefix, the queue; not the host, which may be
spelled differently on each machine). The coordinator reads them (``service.health``): fresh
workers on another route and none on its own is a configuration mismatch (e.g. a worker env file
without the coordinator's ``global_keyprefix``), which the sweep records on the waiting round
and ``/metrics`` counts (``rankloop_render_workers{route}``).
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

from rankloop.core.contracts import GPU_QUEUE
from rankloop.core.settings import Settings

WORKER_BEAT_PREFIX: Final = "workers/"
WORKER_BEAT_EVERY_S: Final = 10.0
WORKER_BEAT_STALE_S: Final = 35.0  # three beats missed: the worker is gone
WORKER_BEAT_FORGET_S: Final = 24 * 3600.0  # and its heartbeat deleted a day later


def worker_beat_key(worker: str) -> str:
    """The object store key of a render worker's heartbeat."""
    return WORKER_BEAT_PREFIX + re.sub(r"[^A-Za-z0-9._@-]", "_", worker)[:200] + ".json"


def render_route(settings: Settings) -> dict[str, Any]:
    """Where render messages travel under ``settings``: equal on a coordinator and a worker
    exactly when the worker reads what the coordinator sends."""
    url = urlsplit(settings.broker_url)
    return {
        "transport": url.scheme,
        "database": url.path.strip("/") or None,  # a Redis database number or an AMQP vhost
        "keyprefix": settings.broker_transport_options.get("global_keyprefix") or "",
        "queue": GPU_QUEUE,
    }


def describe_route(route: dict[str, Any]) -> str:
    return (
        f"{route.get('transport')} database {route.get('database')!r}, key prefix "
        f"{route.get('keyprefix')!r}, queue {route.get('queue')!r}"
    )


__all__ = [
    "WORKER_BEAT_EVERY_S",
    "WORKER_BEAT_FORGET_S",
    "WORKER_BEAT_PREFIX",
    "WORKER_BEAT_STALE_S",
    "describe_route",
    "render_route",
    "worker_beat_key",
]
