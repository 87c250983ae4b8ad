"""What the object store says of a render: its worker's heartbeat
(``contracts.heartbeat_key``), read and dropped by the coordinator.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import current_app, has_app_context

from rankloop.core.contracts import heartbeat_key

log = logging.getLogger(__name__)


def render_heartbeat(campaign_id: str, round_number: int) -> dict[str, Any] | None:
    """The round's render heartbeat (``contracts.heartbeat_key``: ``at``, ``worker``, and
    ``error`` when the render failed for good), or None when there is none or the store cannot
    say."""
    data = store_call("get", heartbeat_key(campaign_id, round_number))
    if data is None:
        return None
    try:
        beat = json.loads(data)
    except ValueError:
        return {}  # a damaged heartbeat beats no more
    return beat if isinstance(beat, dict) else {}


def drop_heartbeat(campaign_id: str, round_number: int) -> None:
    store_call("delete", heartbeat_key(campaign_id, round_number))


def store_call(method: str, key: str) -> Any:
    """``store.<method>(key)`` on the coordinator's store; None when it fails or is absent."""
    if not has_app_context():
        return None
    store = current_app.extensions.get("rankloop_store")
    if store is None:
        return None
    try:
        if method == "get" and not store.exists(key):
            return None
        return getattr(store, method)(key)
    except Exception as error:  # the store is down: the caller falls back (render_timeout_s)
        log.warning("store %s %s failed: %s", method, key, error)
        return None


__all__ = ["drop_heartbeat", "render_heartbeat", "store_call"]
