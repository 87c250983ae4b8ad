"""The render-and-update task, ``rankloop.render_round`` on queue ``gpu``.

Thin on purpose: it builds the object store from the worker's environment and calls
:func:`gpu_worker.render.render_round`, which is idempotent (a complete manifest is returned
as is). Failures are recorded, never left as a stuck round:

- bad settings, an unknown model, a corrupted state object, an image too large for the GPU:
  a :class:`~rankloop.core.errors.RankloopError` subclass, not retried (the coordinator's
  ``link_error`` records it);
- a transient object-store error: retried with exponential backoff, then recorded.

Models load once per worker process, after the fork (lazily on the first task, or at process
start when ``RANKLOOP_WARMUP`` holds a JSON settings object to render once).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

from celery.signals import worker_process_init

from gpu_worker.celery_app import TASK_NAME, app
from rankloop.core.errors import CorruptedObject, StorageError
from rankloop.core.settings import load_settings

log = logging.getLogger(__name__)

MAX_STORE_RETRIES = 5


@functools.cache
def worker_store():
    """The object store from ``RANKLOOP_STORE_URL`` / ``RANKLOOP_S3_*``, one per process."""
    from rankloop.stores import store_from_config

    return store_from_config(load_settings())


@app.task(bind=True, name=TASK_NAME, max_retries=MAX_STORE_RETRIES)
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
    try:
        return render_round(
            worker_store(), campaign_id, round_number, settings or {}, previous_state_key, consensus
        )
    except CorruptedObject:
        raise  # retrying cannot fix a damaged object
    except StorageError as error:
        delay = min(60, 2 ** (self.request.retries + 1))
        log.warning("object store error (retry in %ss): %s", delay, error)
        raise self.retry(exc=error, countdown=delay) from error


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
        settings = dict(warmup)
        generator = load_generator(settings)
        settings = resolve_settings(settings, generator)
        batch = settings["m"] + 1  # a round renders its m points and the current best together
        shape = (batch, *generator.latent_shape(settings))
        generator.render(np.random.default_rng(0).standard_normal(shape), settings)
    except Exception:
        # A bad warm-up must not crash-loop the pool: tasks will report the same error clearly.
        log.exception("warm-up failed (RANKLOOP_WARMUP=%s)", json.dumps(warmup))
        return
    log.info("warm-up of %s done in %.1fs", settings["generator"], time.perf_counter() - started)
