"""Bookkeeping on the ``coord`` queue, and how renders are sent to the ``gpu`` queue.

Flask's Celery pattern: :func:`celery_init_app` gives every task an app context and keeps the
Celery app in ``app.extensions["celery"]``. The render task is sent by name (this process never
imports ``gpu_worker``), linked to :func:`round_rendered_task` and, on final failure, to
:func:`round_failed_task`, so the GPU worker never touches the database. Each task reloads what
it needs by key and returns early when the work is already done, so redelivery is harmless.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from celery import Celery, Task, shared_task
from celery.signals import worker_init, worker_process_init
from flask import Flask, current_app

from service import rounds
from service.db import session_scope

log = logging.getLogger(__name__)

RENDER_TASK = "rankloop.render_round"


def celery_config(config: dict[str, Any]) -> dict[str, Any]:
    # (kombu's SQLAlchemy transport hands its options to create_engine: no polling_interval.)
    transport = dict(config.get("BROKER_TRANSPORT_OPTIONS") or {})
    backend = {k: v for k, v in transport.items() if k == "global_keyprefix"}
    return {
        "broker_url": config["BROKER_URL"],
        "broker_transport_options": transport,
        "result_backend_transport_options": backend,
        "broker_connection_retry_on_startup": True,
        # Optional: with the GPU workers' result backend, a failed render's exception is
        # recorded on the round, not only "see the worker's log".
        "result_backend": config.get("RESULT_BACKEND") or None,
        "task_ignore_result": True,
        "task_default_queue": "coord",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "rankloop-sweep": {
                "task": "rankloop.coord.sweep",
                "schedule": 2.0,
                "options": {"queue": "coord", "expires": 10},
            },
        },
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(app.config))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def send_renders(renders: Iterable[rounds.RenderRequest], app: Flask | None = None) -> list[str]:
    """Send render requests (after their rows are committed); a send that fails is logged and
    left to :func:`rounds.sweep`, which re-sends renders that never left."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    celery: Celery = app.extensions["celery"]
    sent = []
    for request in renders:
        task_id = f"render-{request.campaign_id}-{request.round_number:04d}-{uuid.uuid4().hex[:8]}"
        where = {"campaign_id": request.campaign_id, "round_number": request.round_number}
        try:
            celery.send_task(
                RENDER_TASK,
                kwargs=request.kwargs(),
                queue="gpu",
                task_id=task_id,
                link=celery.signature("rankloop.coord.round_rendered", queue="coord"),
                link_error=celery.signature(
                    "rankloop.coord.round_failed", kwargs=where, queue="coord"
                ),
            )
        except Exception:  # the broker is down: the sweep re-sends
            log.exception("could not send render %s", task_id)
            continue
        with session_scope(app) as session:
            rounds.mark_enqueued(session, request.campaign_id, request.round_number, task_id)
        sent.append(task_id)
    return sent


def after_ranking(round_id: int, app: Flask | None = None) -> None:
    """Close the round if that ranking completed its quorum: inline (fast path) or queued."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config.get("INLINE_BOOKKEEPING", True):
        with session_scope(app) as session:
            outcome = rounds.close_if_ready(session, round_id)
        send_renders(outcome.renders, app)
    else:
        app.extensions["celery"].send_task(
            "rankloop.coord.close_round", args=(round_id,), queue="coord"
        )


def warm_up_consensus(**_: Any) -> None:
    """Pay the consensus engine's first-call cost (scipy's MILP import, about a second) at
    process start instead of in the first round transition."""
    from rankloop.core.consensus import AnnotatorReliability, aggregate

    aggregate([("a", [0, 1, 2]), ("b", [1, 0, 2])], 3, reliability=AnnotatorReliability())


worker_init.connect(warm_up_consensus, weak=False)
worker_process_init.connect(warm_up_consensus, weak=False)


@shared_task(name="rankloop.coord.round_rendered", ignore_result=True)
def round_rendered_task(result: dict[str, Any]) -> bool:
    with session_scope() as session:
        return rounds.round_rendered(session, result)


@shared_task(name="rankloop.coord.round_failed", ignore_result=True)
def round_failed_task(
    request_or_task_id: Any = None,
    exc: BaseException | None = None,
    traceback: Any = None,
    *,
    campaign_id: str,
    round_number: int,
) -> bool:
    # Called with (request, exc, traceback) when this task is registered in the render worker,
    # else as a task with the failed task's id only (Celery's two errback conventions).
    if exc is not None:
        error = f"{type(exc).__name__}: {exc}"
    else:
        error = _stored_error(str(request_or_task_id)) or (
            f"render task {request_or_task_id} failed; see the GPU worker's log"
        )
    with session_scope() as session:
        return rounds.round_failed(session, campaign_id, int(round_number), error)


def _stored_error(task_id: str) -> str | None:
    """The exception a failed render left in the result backend, when there is one."""
    celery: Celery = current_app.extensions["celery"]
    if not celery.conf.result_backend:
        return None
    try:
        result = celery.AsyncResult(task_id).result
    except Exception:  # the backend is down or holds something undecodable: keep the plain note
        log.exception("could not read the result of %s", task_id)
        return None
    return f"{type(result).__name__}: {result}" if isinstance(result, BaseException) else None


@shared_task(name="rankloop.coord.close_round", ignore_result=True)
def close_round_task(round_id: int) -> None:
    with session_scope() as session:
        outcome = rounds.close_if_ready(session, int(round_id))
    send_renders(outcome.renders)


@shared_task(name="rankloop.coord.sweep", ignore_result=True)
def sweep_task() -> list[str]:
    with session_scope() as session:
        outcome = rounds.sweep(session)
    send_renders(outcome.renders)
    return outcome.events
