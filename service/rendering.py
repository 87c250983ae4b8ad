"""The render hand-off: a new round row and its render message, the render's result (the
round opens) or its final failure, and the sending of render messages.

A step (see :mod:`service`) returns the render messages it made in an :class:`Outcome`;
:func:`run_step` commits the step and only then sends them, so a message never announces a row
that does not exist yet. A send that fails leaves the round ``rendering`` with no
``render_enqueued_at``, and the sweep (:func:`service.closing.sweep`) sends it again.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app
from sqlalchemy import update
from sqlalchemy.orm import Session

from rankloop.core.contracts import (
    CANDIDATE,
    COORD_QUEUE,
    GPU_QUEUE,
    RENDER_TASK,
    ROUND_FAILED_TASK,
    ROUND_RENDERED_TASK,
    ConsensusFeed,
    RenderMessage,
    RenderResult,
    RenderSettings,
    parse,
)
from rankloop.core.errors import InvalidInput
from service.db import session_scope
from service.models import Campaign, Image, Round, utcnow
from service.transitions import audit, compare_and_set, find_round, get_campaign

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a step did: the render messages to send after its commit, and what happened."""

    renders: list[RenderMessage] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def render_settings(campaign: Campaign) -> RenderSettings:
    """The campaign settings a render worker gets (the rest stays with the coordinator)."""
    return parse(
        RenderSettings, {**campaign.settings, "prompt": campaign.prompt}, "campaign settings"
    )


def render_message(campaign: Campaign, round_: Round) -> RenderMessage:
    """The message that renders ``round_`` (again, after a loss: it is built from the row)."""
    return RenderMessage(
        campaign_id=campaign.id,
        round_number=round_.number,
        settings=render_settings(campaign),
        previous_state_key=round_.previous_state_key,
        consensus=None
        if round_.consensus_in is None
        else ConsensusFeed.model_validate(round_.consensus_in),
    )


def new_round(
    session: Session,
    campaign: Campaign,
    number: int,
    previous: Round | None,
    consensus: ConsensusFeed | None,
) -> RenderMessage:
    """Add round ``number`` (rendering) to the step's transaction; its render message."""
    round_ = Round(
        campaign_id=campaign.id,
        number=number,
        status="rendering",
        previous_state_key=previous.state_key if previous else None,
        consensus_in=None if consensus is None else consensus.model_dump(),
    )
    session.add(round_)
    audit(session, "round_render_requested", campaign.id, number)
    return render_message(campaign, round_)


def round_rendered(
    session: Session, result: dict[str, Any], now: dt.datetime | None = None
) -> bool:
    """Record a render result and open the round. A duplicate result changes nothing."""
    now = now or utcnow()
    rendered = parse(RenderResult, result, "render result")
    if not rendered.images:
        raise InvalidInput(f"render result for round {rendered.round_number} holds no images")
    campaign = get_campaign(session, rendered.campaign_id, lock=True)
    round_ = find_round(session, rendered.campaign_id, rendered.round_number)
    if round_ is None or round_.status != "rendering":
        session.rollback()
        return False
    # Positions: the candidates in index order, then the attention image.
    images = sorted(rendered.images, key=lambda i: (i.role != CANDIDATE, i.index))
    deadline = now + dt.timedelta(seconds=float(campaign.settings["round_deadline_s"]))
    best = rendered.best
    won = compare_and_set(
        session,
        round_,
        "rendering",
        status="open",
        kind=rendered.kind,
        state_key=rendered.state_key,
        manifest_key=rendered.manifest_key,
        best_key=best.key if best else None,
        best_thumb_key=best.thumb_key if best else None,
        render_seconds=rendered.render_seconds,
        stats=rendered.stats,
        opened_at=now,
        deadline=deadline,
    )
    if not won:
        session.rollback()
        return False
    for position, image in enumerate(images):
        session.add(
            Image(
                round_id=round_.id,
                position=position,
                index=image.index,
                role=image.role,
                key=image.key,
                thumb_key=image.thumb_key,
            )
        )
    audit(
        session,
        "round_opened",
        campaign.id,
        round_.number,
        n_images=len(images),
        kind=rendered.kind,
        render_seconds=rendered.render_seconds,
    )
    session.commit()
    return True


def round_failed(session: Session, campaign_id: str, round_number: int, error: str) -> bool:
    """A render failed for good (the worker's retries are spent): fail the campaign visibly."""
    campaign = get_campaign(session, campaign_id, lock=True)
    round_ = find_round(session, campaign_id, round_number)
    if round_ is None or not compare_and_set(
        session, round_, "rendering", status="failed", error=error
    ):
        session.rollback()
        return False
    if campaign.status in ("running", "paused"):
        campaign.status = "failed"
    campaign.error = f"round {round_number}: {error}"
    audit(session, "round_failed", campaign_id, round_number, error=error)
    session.commit()
    return True


def mark_enqueued(session: Session, campaign_id: str, round_number: int, job_id: str) -> None:
    """Note that the render job ``job_id`` left (the sweep re-sends one that never did)."""
    session.execute(
        update(Round)
        .where(
            Round.campaign_id == campaign_id,
            Round.number == round_number,
            Round.status == "rendering",
        )
        .values(render_enqueued_at=utcnow(), render_task_id=job_id)
    )
    session.commit()


def send_renders(renders: Iterable[RenderMessage], app: Flask | None = None) -> list[str]:
    """Send render messages whose rows are committed; the ids of the jobs sent. A send that
    fails is logged and left to the sweep."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    celery = app.extensions["celery"]
    sent = []
    for message in renders:
        job_id = f"render-{message.campaign_id}-{message.round_number:04d}-{uuid.uuid4().hex[:8]}"
        where = {"campaign_id": message.campaign_id, "round_number": message.round_number}
        try:
            celery.send_task(
                RENDER_TASK,
                kwargs=message.model_dump(mode="json"),
                queue=GPU_QUEUE,
                task_id=job_id,
                link=celery.signature(ROUND_RENDERED_TASK, queue=COORD_QUEUE),
                link_error=celery.signature(ROUND_FAILED_TASK, kwargs=where, queue=COORD_QUEUE),
            )
        except Exception:  # the broker is down: the sweep re-sends
            log.exception("could not send render %s", job_id)
            continue
        with session_scope(app) as session:
            mark_enqueued(session, message.campaign_id, message.round_number, job_id)
        sent.append(job_id)
    return sent


def run_step(
    step: Callable[..., Outcome],
    *args: Any,
    session: Session | None = None,
    app: Flask | None = None,
) -> Outcome:
    """``step(session, *args)``, which commits, then its render messages sent: the one way a
    step runs, from the API, the bookkeeping jobs and ``rankloop up``. ``session``: the
    request's; by default one of its own."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    if session is None:
        with session_scope(app) as own:
            outcome = step(own, *args)
    else:
        outcome = step(session, *args)
    send_renders(outcome.renders, app)
    return outcome


__all__ = [
    "Outcome",
    "mark_enqueued",
    "new_round",
    "render_message",
    "render_settings",
    "round_failed",
    "round_rendered",
    "run_step",
    "send_renders",
]
