"""The render hand-off: a new round row and its render message, the render's result (the
round opens) or its final failure, and :func:`run_step`, the one way a step runs.

A step (see :mod:`service`) returns the render messages it made in an :class:`Outcome`;
:func:`run_step` commits the step and only then sends them (:mod:`service.render_sending`), so a
message never announces a row that does not exist yet. The rest of a render's way has a module
each: its message (:mod:`service.render_messages`), its owner's render slots
(:mod:`service.render_slots`, :mod:`service.preview_renders`) and the order of the renders that
wait for one (:mod:`service.render_queue`), its heartbeat in the store
(:mod:`service.render_heartbeats`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app
from sqlalchemy.orm import Session

from rankloop.core.contracts import (
    CAMPAIGN_LIVE,
    CampaignStatus,
    ConsensusFeed,
    ImageRole,
    RenderMessage,
    RenderResult,
    RoundStatus,
    parse,
    render_error_is_permanent,
)
from rankloop.core.errors import InvalidInput
from service.db import session_scope
from service.models import Campaign, Image, Round, utcnow
from service.render_messages import IMAGE_SALT, render_message
from service.render_sending import send_renders
from service.statements import initial_quorum
from service.transitions import audit, compare_and_set, find_round, get_campaign


@dataclass
class Outcome:
    """What a step did: the render messages to send after its commit, and what happened."""

    renders: list[RenderMessage] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    campaign_id: str | None = None  # the campaign a step created (a fork), if any


def new_round(
    session: Session,
    campaign: Campaign,
    number: int,
    previous: Round | None,
    consensus: ConsensusFeed | None,
) -> RenderMessage:
    """Add round ``number`` (rendering) to the step's transaction; its render message."""
    if not campaign.config.image_salt:
        # The campaign's secret for image names, made with its first round (and for campaigns
        # older than it, with their next one); a new dict, so the JSON column sees the change.
        campaign.settings = {**campaign.settings, IMAGE_SALT: secrets.token_hex(16)}
    round_ = Round(
        campaign_id=campaign.id,
        number=number,
        status=RoundStatus.RENDERING,
        previous_state_key=previous.state_key if previous else None,
        consensus_in=None if consensus is None else consensus.model_dump(),
        quorum=initial_quorum(campaign.config),
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
    if round_ is None or round_.status != RoundStatus.RENDERING:
        session.rollback()
        return False
    # Positions: the candidates in index order, then the attention image.
    images = sorted(rendered.images, key=lambda i: (i.role != ImageRole.CANDIDATE, i.index))
    deadline = now + dt.timedelta(seconds=campaign.config.round_deadline_s)
    best = rendered.best
    won = compare_and_set(
        session,
        round_,
        RoundStatus.RENDERING,
        status=RoundStatus.OPEN,
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


def round_failed(
    session: Session,
    campaign_id: str,
    round_number: int,
    error: str,
    now: dt.datetime | None = None,
) -> bool:
    """A render failed after the worker's retries. A permanent error
    (``contracts.render_error_is_permanent``: bad settings, unknown model, damaged object) fails
    the round and its campaign visibly (the owner may resume it). Any other (the store or the
    broker down, an error of unknown class) leaves the round ``rendering``, audited as
    ``round_render_error``, and the sweep sends it again (:func:`service.sweep.sweep`): an
    outage pauses a campaign, never ends it. True when the round changed."""
    campaign = get_campaign(session, campaign_id, lock=True)
    round_ = find_round(session, campaign_id, round_number)
    if round_ is None or round_.status != RoundStatus.RENDERING:
        session.rollback()
        return False
    if not render_error_is_permanent(error):
        if not compare_and_set(
            session, round_, RoundStatus.RENDERING, render_enqueued_at=now or utcnow()
        ):
            session.rollback()
            return False
        audit(session, "round_render_error", campaign_id, round_number, error=error)
        session.commit()
        return True
    if not compare_and_set(
        session, round_, RoundStatus.RENDERING, status=RoundStatus.FAILED, error=error
    ):
        session.rollback()
        return False
    if campaign.status in CAMPAIGN_LIVE:
        campaign.status = CampaignStatus.FAILED
    campaign.error = f"round {round_number}: {error}"
    audit(session, "round_failed", campaign_id, round_number, error=error)
    session.commit()
    return True


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
    "new_round",
    "round_failed",
    "round_rendered",
    "run_step",
]
