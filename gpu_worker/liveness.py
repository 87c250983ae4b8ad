"""The render worker's own heartbeat (``rankloop.core.liveness``): its route, every few seconds,
from the worker's main process while it consumes; removed at a warm shutdown."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from rankloop.core.liveness import WORKER_BEAT_EVERY_S, render_route, worker_beat_key
from rankloop.core.settings import load_settings
from rankloop.core.startup import redact

log = logging.getLogger(__name__)
_done = threading.Event()
_beating: dict[str, Any] = {}


def beat_body(worker: str) -> bytes:
    settings = load_settings()
    return json.dumps({
        "at": time.time(),
        "worker": worker,
        "route": render_route(settings),
        "broker": redact(settings.broker_url),
    }).encode()  # fmt: skip


@worker_ready.connect(weak=False)
def _start(sender: Any = None, **_: Any) -> None:
    from rankloop.stores import store_from_config

    worker = str(getattr(sender, "hostname", None) or "render-worker")
    # A store of its own: the pool's processes build theirs after the fork.
    store = store_from_config(load_settings())
    key = worker_beat_key(worker)
    _beating.update(store=store, key=key)

    def beat() -> None:
        while True:
            try:
                store.put(key, beat_body(worker), "application/json")
            except Exception as error:  # the store down: the next beat tries again
                log.warning("worker heartbeat %s not written: %s", key, error)
            if _done.wait(WORKER_BEAT_EVERY_S):
                return

    threading.Thread(target=beat, name="worker-heartbeat", daemon=True).start()


@worker_shutdown.connect(weak=False)
def _stop(**_: Any) -> None:
    _done.set()
    if _beating:
        try:
            _beating["store"].delete(_beating["key"])
        except Exception as error:
            log.warning("worker heartbeat %s not removed: %s", _beating["key"], error)
