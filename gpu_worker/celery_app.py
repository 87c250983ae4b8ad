"""The GPU workers' Celery app: broker and object store only, no database.

Configured from the environment (nothing else is read):

``RANKLOOP_BROKER_URL``
    default ``sqla+sqlite:///var/broker.sqlite`` (the embedded single-machine default);
    production: ``redis://host:6379/0``.
``RANKLOOP_RESULT_BACKEND``
    optional (e.g. ``redis://host:6379/1``); the coordinator links completion to its own
    ``coord`` queue, so results are not needed for the data path.
``RANKLOOP_BROKER_TRANSPORT_OPTIONS``
    JSON, e.g. ``{"global_keyprefix": "prod:", "visibility_timeout": 3600}``; also applied to
    the result backend (key prefix). With Redis, ``visibility_timeout`` must exceed the longest
    render: an unacknowledged task is redelivered after it.

Delivery is at-least-once and the task is idempotent: ``acks_late`` (a task is acknowledged only
when done), ``task_reject_on_worker_lost`` (a killed worker's task goes back to the queue), and
``worker_prefetch_multiplier=1`` (a worker holds no task it is not running). Run one worker
process per GPU: ``CUDA_VISIBLE_DEVICES=i celery -A gpu_worker.celery_app worker -Q gpu
--pool prefork --concurrency 1`` (see ``infra/worker/``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from celery import Celery

from rankloop.core.errors import InvalidInput

DEFAULT_BROKER_URL = "sqla+sqlite:///var/broker.sqlite"
QUEUE = "gpu"
TASK_NAME = "rankloop.render_round"


def celery_config(environ: Mapping[str, str] | None = None) -> dict:
    """Celery settings from ``RANKLOOP_*`` environment variables (see the module docstring)."""
    environ = os.environ if environ is None else environ
    broker_url = environ.get("RANKLOOP_BROKER_URL") or DEFAULT_BROKER_URL
    raw_options = environ.get("RANKLOOP_BROKER_TRANSPORT_OPTIONS") or "{}"
    try:
        transport_options = json.loads(raw_options)
    except ValueError as error:
        raise InvalidInput(f"RANKLOOP_BROKER_TRANSPORT_OPTIONS is not JSON: {error}") from None
    if not isinstance(transport_options, dict):
        raise InvalidInput("RANKLOOP_BROKER_TRANSPORT_OPTIONS must be a JSON object")
    if broker_url.startswith("sqla+sqlite:///var/"):
        Path("var").mkdir(exist_ok=True)  # the embedded default keeps its broker in ./var
    backend_options = {
        k: v for k, v in transport_options.items() if k in ("global_keyprefix", "retry_policy")
    }
    return {
        "broker_url": broker_url,
        "result_backend": environ.get("RANKLOOP_RESULT_BACKEND") or None,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": backend_options,
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": QUEUE,
        "task_routes": {TASK_NAME: {"queue": QUEUE}},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_track_started": True,
        "result_extended": True,
        # A model stays loaded for the worker's life: never recycle the process per task.
        "worker_max_tasks_per_child": None,
    }


def make_celery(environ: Mapping[str, str] | None = None) -> Celery:
    """A Celery app with the GPU worker's settings (tests build one per environment)."""
    app = Celery("rankloop_gpu", include=["gpu_worker.tasks"])
    app.conf.update(celery_config(environ))
    return app


app = make_celery()
