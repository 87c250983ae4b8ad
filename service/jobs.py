"""Sending the coordinator's Celery jobs, by name: the bottom of the ranking's way.

Views and the bookkeeping jobs call the steps (:mod:`service.closing`,
:mod:`service.lifecycle`, ...); a step's render messages go out through
:func:`service.rendering.send_renders`, and a round whose quorum came in with a ranking is
closed inline or queued here (:func:`send_close_round`). Nothing here imports a step: jobs go
by name (:mod:`rankloop.core.contracts`) to the Celery app that
:func:`service.tasks.celery_init_app` keeps in ``app.extensions["celery"]``, and this process
never imports ``gpu_worker``.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from flask import Flask

from rankloop.core.contracts import (
    CLOSE_ROUND_TASK,
    COORD_QUEUE,
    GPU_QUEUE,
    RENDER_TASK,
    ROUND_FAILED_TASK,
    ROUND_RENDERED_TASK,
    RenderMessage,
)


def celery_of(app: Flask) -> Celery:
    return app.extensions["celery"]


def send_render(app: Flask, message: RenderMessage, job_id: str, *, linked: bool = True) -> None:
    """Send ``message`` to the render workers as job ``job_id``; ``linked``: its result and its
    final failure come back to the bookkeeping jobs (a round's render), else nothing comes back
    (a preview: its page reads the store)."""
    celery = celery_of(app)
    options: dict[str, Any] = {}
    if linked:
        where = {"campaign_id": message.campaign_id, "round_number": message.round_number}
        options = {
            "link": celery.signature(ROUND_RENDERED_TASK, queue=COORD_QUEUE),
            "link_error": celery.signature(ROUND_FAILED_TASK, kwargs=where, queue=COORD_QUEUE),
        }
    celery.send_task(
        RENDER_TASK,
        kwargs=message.model_dump(mode="json"),
        queue=GPU_QUEUE,
        task_id=job_id,
        **options,
    )


def send_close_round(app: Flask, round_id: int) -> None:
    """Queue the closing of round ``round_id`` (``rankloop.coord.close_round``)."""
    celery_of(app).send_task(CLOSE_ROUND_TASK, args=(round_id,), queue=COORD_QUEUE)
