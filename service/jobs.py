"""Sending the coordinator's Celery jobs, by name: the bottom of the ranking's way.

Views and the bookkeeping jobs call the steps (:mod:`service.closing`,
:mod:`service.lifecycle`, ...); a step's render messages go out through
:func:`service.render_sending.send_renders`, and a round whose quorum came in with a ranking is
closed inline or queued here (:func:`send_close_round`). Nothing here imports a step: jobs go
by name (:mod:`rankloop.core.contracts`) to the Celery app that
:func:`service.tasks.celery_init_app` keeps in ``app.extensions["celery"]``, and this process
never imports ``gpu_worker``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
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
from rankloop.core.settings import broker_is_redis

log = logging.getLogger(__name__)
PAGE = 500  # queued messages read from Redis per LRANGE
# kombu's Redis transport: a queue's messages of priority p > 0 wait in "<queue><sep><p>".
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
KOMBU_PRIORITY_SEP = "\x06\x16"


def redis_queue_keys(queue: str, transport_options: dict[str, Any]) -> list[str]:
    """The Redis lists kombu keeps ``queue``'s messages in, under the broker's key prefix
    (``global_keyprefix`` in :func:`~rankloop.core.settings.broker_settings`), one per
    priority step."""
    prefix = transport_options.get("global_keyprefix") or ""
    sep = transport_options.get("sep", KOMBU_PRIORITY_SEP)
    steps = transport_options.get("priority_steps", KOMBU_PRIORITY_STEPS)
    return [f"{prefix}{queue}{sep}{p}" if p else f"{prefix}{queue}" for p in steps]


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


def render_jobs_held(app: Flask, job_ids: Collection[str]) -> set[str] | None:
    """Which of the render jobs ``job_ids`` the broker still holds: queued on the render queue
    (any of its priority lists) or delivered to a worker and not yet acknowledged (kombu's
    ``unacked`` hash). None when the broker cannot say: not Redis (RabbitMQ keeps its queues
    across restarts, and what it holds cannot be read without taking it), or unreachable.

    Read in the order a message moves (the queue's lists, then ``unacked``), under the key
    prefix every process shares (``broker_settings``), so a message taken by a worker between
    the two reads is still seen. The caller reads the render's heartbeat again afterwards: a
    worker that took the message since has started beating."""
    if not job_ids:
        return set()
    celery = celery_of(app)
    url = str(celery.conf.broker_url or "")
    if not broker_is_redis(url):
        return None
    options = celery.conf.broker_transport_options or {}
    prefix = str(options.get("global_keyprefix") or "")  # for kombu's unacked hash
    wanted = {job_id: job_id.encode() for job_id in job_ids}
    held: set[str] = set()

    def look(raw: bytes | str) -> None:
        if isinstance(raw, str):
            raw = raw.encode()
        for job_id, needle in wanted.items():
            if needle in raw:
                held.add(job_id)

    try:
        with celery.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            channel = connection.default_channel
            # A plain client on the channel's pool: the keys prefixed here, once.
            import redis

            client = redis.Redis(connection_pool=channel.client.connection_pool)
            for key in redis_queue_keys(GPU_QUEUE, options):
                start = 0
                while True:  # new messages go in on the left: a page boundary never skips one
                    page = client.lrange(key, start, start + PAGE - 1)
                    for raw in page:
                        look(raw)
                    if len(page) < PAGE:
                        break
                    start += PAGE
            for raw in client.hvals(prefix + channel.unacked_key):
                look(raw)
    except Exception as error:  # the broker down: it cannot say (the render timeout decides)
        log.info("render queue unreadable: %s", error)
        return None
    return held
