"""The GPU workers' Celery app: broker and object store only, no database.

Configured by :func:`rankloop.core.settings.load_settings`, like the coordinator; a worker uses
``RANKLOOP_BROKER_URL`` (default: the embedded broker, ``var/broker.sqlite``; production:
``redis://host:6379/0``), ``RANKLOOP_BROKER_TRANSPORT_OPTIONS`` (JSON, e.g.
``{"global_keyprefix": "prod:", "visibility_timeout": 3600}``; with Redis,
``visibility_timeout`` must exceed the longest render: an unacknowledged task is redelivered
after it), the optional ``RANKLOOP_RESULT_BACKEND``, the store (``RANKLOOP_STORE_URL``,
``RANKLOOP_S3_*``) and its own ``RANKLOOP_DEVICE``, ``RANKLOOP_COMPILE_*``,
``RANKLOOP_INDUCTOR_CACHE`` and ``RANKLOOP_WARMUP``. The broker part of the Celery
configuration is :func:`~rankloop.core.settings.broker_settings`, the coordinator's too: the
broker settings must be the same on both sides, or renders wait in a queue nobody reads.

Delivery is at-least-once and the task is idempotent (``acks_late``,
``task_reject_on_worker_lost``, prefetch 1). Run one worker process per GPU:
``CUDA_VISIBLE_DEVICES=i celery -A gpu_worker.celery_app worker -Q gpu --pool prefork
--concurrency 1`` (see ``infra/worker/``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_init

from rankloop.core.contracts import GPU_QUEUE, RENDER_TASK
from rankloop.core.jsonlog import use_json
from rankloop.core.settings import Settings, broker_settings, load_settings, make_local_dirs
from rankloop.core.startup import announce

QUEUE = GPU_QUEUE
TASK_NAME = RENDER_TASK


def celery_config(settings: Settings) -> dict[str, Any]:
    """The render workers' Celery settings: the shared broker part plus their queue."""
    return {
        **broker_settings(settings),
        "task_default_queue": GPU_QUEUE,
        "task_routes": {RENDER_TASK: {"queue": GPU_QUEUE}},
        "task_track_started": True,
        "result_extended": True,
        # A model stays loaded for the worker's life: never recycle the process per task.
        "worker_max_tasks_per_child": None,
    }


def make_celery(environ: Mapping[str, str] | None = None) -> Celery:
    """A Celery app with the GPU worker's settings, from ``environ`` (default: the process
    environment; tests build one per environment)."""
    settings = load_settings(environ)
    make_local_dirs(settings)
    app = Celery("rankloop_gpu", include=["gpu_worker.tasks", "gpu_worker.liveness"])
    app.conf.update(celery_config(settings))
    return app


app = make_celery()


@worker_init.connect(weak=False)
def _announce(**_: Any) -> None:
    # One line at start: which broker (and key prefix) and store this worker uses.
    announce("rankloop render worker", load_settings(), database=False)


@after_setup_logger.connect(weak=False)
@after_setup_task_logger.connect(weak=False)
def _log_format(logger: Any = None, **_: Any) -> None:
    # RANKLOOP_LOG_FORMAT=json: one JSON object per line, as the coordinator's processes write.
    if logger is not None and load_settings().log_format == "json":
        use_json(logger)
