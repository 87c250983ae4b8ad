"""The Celery jobs of the coordinator: bookkeeping on the ``coord`` queue.

Flask's Celery pattern: :func:`celery_init_app` gives every job an app context and keeps the
Celery app in ``app.extensions["celery"]``. Jobs are sent by name (:mod:`service.jobs`; this
process never imports ``gpu_worker``); a render is linked to :func:`round_rendered_task` and, on
final failure, to :func:`round_failed_task`, so the GPU worker never touches the database. This
module is an entry point, as the views are: it calls the steps, and no step imports it. Each job
reloads what it needs by key and returns early when the work is already done, so redelivery is
harmless.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task, shared_task
from celery.signals import worker_init, worker_process_init
from flask import Flask, current_app

from rankloop.core.contracts import (
    CLOSE_ROUND_TASK,
    COORD_QUEUE,
    ROUND_FAILED_TASK,
    ROUND_RENDERED_TASK,
    SWEEP_TASK,
)
from rankloop.core.settings import Settings, broker_settings
from service import closing, rendering, sweep
from service.config import settings_of
from service.db import database_unavailable_errors, session_scope
from service.render_heartbeats import render_heartbeat
from service.render_sending import send_waiting

log = logging.getLogger(__name__)


def celery_config(settings: Settings) -> dict[str, Any]:
    # The broker part is the render workers' too (rankloop.core.settings.broker_settings). With
    # their result backend set, a failed render's exception is recorded on the round, not only
    # "see the worker's log".
    return {
        **broker_settings(settings),
        "task_ignore_result": True,
        "task_default_queue": COORD_QUEUE,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "rankloop-sweep": {
                "task": SWEEP_TASK,
                "schedule": 2.0,
                "options": {"queue": COORD_QUEUE, "expires": 10},
            },
        },
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(settings_of(app)))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def warm_up_consensus(**_: Any) -> None:
    """Pay the consensus engine's first-call cost (scipy's MILP import, about a second) at
    process start instead of in the first round transition."""
    from rankloop.core.consensus import AnnotatorReliability, aggregate

    aggregate([("a", [0, 1, 2]), ("b", [1, 0, 2])], 3, reliability=AnnotatorReliability())


worker_init.connect(warm_up_consensus, weak=False)
worker_process_init.connect(warm_up_consensus, weak=False)


# A job that meets the database down (a PostgreSQL restart) is tried again: 1, 2, 4, 8 s, then
# every 10 s for about five minutes. Acknowledged as failed instead, a round's render result
# would be lost, and the sweep would send the render again once its heartbeat went stale.
DATABASE_RETRIES = 32
DATABASE_RETRY_MAX_S = 10


def _retry_on_database_down(task: Task, error: Exception) -> None:
    """Raise Celery's retry when ``error`` means the database is unreachable (else return)."""
    from sqlalchemy.exc import DBAPIError

    down = isinstance(error, database_unavailable_errors()) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )
    if down:
        delay = min(DATABASE_RETRY_MAX_S, 2**task.request.retries)
        log.warning("database unavailable (retry in %ss): %s", delay, error)
        raise task.retry(exc=error, countdown=delay)


@shared_task(bind=True, name=ROUND_RENDERED_TASK, ignore_result=True, max_retries=DATABASE_RETRIES)
def round_rendered_task(self: Task, result: dict[str, Any]) -> bool:
    try:
        with session_scope() as session:
            opened = rendering.round_rendered(session, result)
    except Exception as error:
        _retry_on_database_down(self, error)
        raise
    if opened:  # committed: the render slot it held goes to its owner's next waiting render
        send_waiting(campaign_id=str(result["campaign_id"]))
    return opened


@shared_task(bind=True, name=ROUND_FAILED_TASK, ignore_result=True, max_retries=DATABASE_RETRIES)
def round_failed_task(
    self: Task,
    request_or_task_id: Any = None,
    exc: BaseException | None = None,
    traceback: Any = None,
    *,
    campaign_id: str,
    round_number: int,
) -> bool:
    # Called with (request, exc, traceback) when this job is registered in the render worker,
    # else as a job with the failed job's id only (Celery's two errback conventions).
    # The error's class name decides whether it fails the campaign (rendering.round_failed):
    # from the exception, the result backend, or the worker's report in the round's heartbeat.
    if exc is not None:
        error = f"{type(exc).__name__}: {exc}"
    else:
        reported = (render_heartbeat(campaign_id, int(round_number)) or {}).get("error")
        error = (
            _stored_error(str(request_or_task_id))
            or (str(reported) if reported else None)
            or f"render job {request_or_task_id} failed; see the GPU worker's log"
        )
    try:
        with session_scope() as session:
            changed = rendering.round_failed(session, campaign_id, int(round_number), error)
    except Exception as failure:
        _retry_on_database_down(self, failure)
        raise
    if changed:  # committed: failed for good, its slot is free (a passing error keeps it)
        send_waiting(campaign_id=campaign_id)
    return changed


def _stored_error(job_id: str) -> str | None:
    """The exception a failed render left in the result backend, when there is one."""
    celery: Celery = current_app.extensions["celery"]
    if not celery.conf.result_backend:
        return None
    try:
        result = celery.AsyncResult(job_id).result
    except Exception:  # the backend is down or holds something undecodable: keep the plain note
        log.exception("could not read the result of %s", job_id)
        return None
    return f"{type(result).__name__}: {result}" if isinstance(result, BaseException) else None


@shared_task(bind=True, name=CLOSE_ROUND_TASK, ignore_result=True, max_retries=DATABASE_RETRIES)
def close_round_task(self: Task, round_id: int) -> None:
    try:
        rendering.run_step(closing.close_if_ready, int(round_id))
    except Exception as error:
        _retry_on_database_down(self, error)
        raise


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep_task() -> list[str]:
    return rendering.run_step(sweep.sweep).events
