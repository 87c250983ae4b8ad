"""The render-and-update task, ``rankloop.render_round`` on queue ``gpu``.

Thin on purpose: it builds the object store from the worker's environment and calls
:func:`gpu_worker.render.render_round`, which is idempotent (a complete manifest is returned
as is). Failures are recorded, never left as a stuck round:

- bad settings, an unknown model, a corrupted state object, an image too large for the GPU:
  a :class:`~rankloop.core.errors.RankloopError` subclass, not retried (the coordinator's
  ``link_error`` records it);
- a transient object-store error: retried after 1, 2, then every ``store_retry_every_s``
  (3 s: a render goes on within that of the store's return) for ``store_outage_budget_s``
  (three and a half minutes), then recorded; the coordinator leaves that round ``rendering``
  and sends it again (only the classes of ``contracts.PERMANENT_RENDER_ERRORS`` fail a
  campaign).

While a render runs, a heartbeat object (``contracts.heartbeat_key``) is rewritten every
``HEARTBEAT_EVERY_S``: the coordinator's sweep sends again a render whose heartbeat went stale
(a worker killed mid-render) within seconds, not after the broker's visibility timeout.

Models load once per worker process, after the fork (lazily on the first task, or at process
start when ``RANKLOOP_WARMUP`` holds a JSON settings object to render once).
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.signals import worker_process_init

from gpu_worker.celery_app import TASK_NAME, app
from rankloop.core.contracts import (
    HEARTBEAT_EVERY_S,
    RenderSettings,
    heartbeat_key,
    parse,
    render_error_is_permanent,
)
from rankloop.core.errors import CorruptedObject, RankloopError, StorageError
from rankloop.core.settings import Settings, load_settings

log = logging.getLogger(__name__)


def store_retry_delay(retries: int, settings: Settings) -> float | None:
    """Seconds before try ``retries + 1`` of a render that met a store error: 1, 2, then
    ``store_retry_every_s``; None once the tries so far have waited ``store_outage_budget_s``
    (then the error is recorded and the coordinator's sweep takes over)."""
    every = settings.store_retry_every_s

    def delay(n: int) -> float:
        return min(every, float(2**n))

    if sum(delay(n) for n in range(retries)) >= settings.store_outage_budget_s:
        return None
    return delay(retries)


@functools.cache
def worker_store():
    """The object store from ``RANKLOOP_STORE_URL`` / ``RANKLOOP_S3_*``, one per process."""
    from rankloop.stores import store_from_config

    return store_from_config(load_settings())


@app.task(bind=True, name=TASK_NAME, max_retries=None)  # bounded by store_retry_delay
def render_round_task(
    self,
    campaign_id: str,
    round_number: int = 0,
    settings: dict[str, Any] | None = None,
    previous_state_key: str | None = None,
    consensus: dict[str, Any] | None = None,
    **newer_fields: Any,
) -> dict[str, Any]:
    """Render round ``round_number`` of ``campaign_id``; see ``docs/architecture.md``."""
    from gpu_worker.render import render_round

    if newer_fields:  # sent by a newer coordinator; this worker does not know them yet
        log.info("ignoring unknown task fields %s", sorted(newer_fields))
    store = None
    try:
        store = worker_store()
        with heartbeat(store, campaign_id, round_number, self.request.hostname):
            return render_round(
                store, campaign_id, round_number, settings or {}, previous_state_key, consensus
            )
    except CorruptedObject as error:
        report_permanent(store, campaign_id, round_number, error)
        raise  # retrying cannot fix a damaged object
    except StorageError as error:
        delay = store_retry_delay(self.request.retries, load_settings())
        if delay is None:
            log.error("object store error, no more tries: %s", error)
            raise
        log.warning("object store error (retry in %ss): %s", delay, error)
        raise self.retry(exc=error, countdown=delay) from error
    except RankloopError as error:
        report_permanent(store, campaign_id, round_number, error)
        raise


def report_permanent(store: Any, campaign_id: str, round_number: int, error: Exception) -> None:
    """Leave a permanent error's class and message in the round's heartbeat object, where the
    coordinator reads it when no result backend carries the exception (it then fails the
    campaign instead of sending the render again)."""
    described = f"{type(error).__name__}: {error}"
    if store is None or not render_error_is_permanent(described):
        return
    try:
        body = {"at": time.time(), "worker": socket.gethostname(), "error": described}
        store.put(heartbeat_key(str(campaign_id), int(round_number)), json.dumps(body).encode())
    except Exception as failure:
        log.warning("could not report %s to the coordinator: %s", described, failure)


@contextmanager
def heartbeat(
    store: Any, campaign_id: str, round_number: int, worker: str | None
) -> Iterator[None]:
    """Rewrite the round's heartbeat object every ``HEARTBEAT_EVERY_S`` while the block runs.
    A write that fails (the store is down) is logged and skipped: the render's own store calls
    say what happens next."""
    try:
        key = heartbeat_key(str(campaign_id), int(round_number))
    except (TypeError, ValueError):  # a malformed message: render_round says what is wrong
        yield
        return
    who = worker or socket.gethostname()
    done = threading.Event()

    def beat() -> None:
        while True:
            try:
                body = json.dumps({"at": time.time(), "worker": who}).encode()
                store.put(key, body, "application/json")
            except Exception as error:
                log.warning("heartbeat %s not written: %s", key, error)
            if done.wait(HEARTBEAT_EVERY_S):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=HEARTBEAT_EVERY_S)


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Load (and on CUDA compile) the campaign's model in the new worker process, if asked."""
    warmup = load_settings().warmup
    if not warmup:
        return
    import numpy as np

    from gpu_worker.generators import load_generator, resolve_settings

    started = time.perf_counter()
    try:
        given = parse(RenderSettings, warmup, "RANKLOOP_WARMUP")
        generator = load_generator(given)
        settings = resolve_settings(given, generator)
        batch = settings.m + 1  # a round renders its m points and the current best together
        shape = (batch, *generator.latent_shape(settings))
        generator.render(np.random.default_rng(0).standard_normal(shape), settings)
    except Exception:
        # A bad warm-up must not crash-loop the pool: tasks will report the same error clearly.
        log.exception("warm-up failed (RANKLOOP_WARMUP=%s)", json.dumps(warmup))
        return
    log.info("warm-up of %s done in %.1fs", settings.generator, time.perf_counter() - started)
