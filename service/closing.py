"""A round closed: on its quorum (:func:`close_if_ready`, right after the ranking that brought it:
:func:`after_ranking`) or at its deadline (:func:`sweep`); the consensus of its rankings, then
the next round's render or the campaign's end. A round short of its quorum at the deadline is
extended, never guessed. The sweep also sends again the renders that never left, never came
back, or whose worker stopped beating (:func:`heartbeat_stale`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from flask import Flask, current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rankloop.core.contracts import (
    CAMPAIGN_ENDED,
    CAMPAIGN_LIVE,
    HEARTBEAT_STALE_S,
    CampaignStatus,
    ImageRole,
    RoundStatus,
)
from rankloop.core.round_step import candidate_feed
from service.config import settings_of
from service.db import session_scope
from service.jobs import send_close_round
from service.models import (
    Annotator,
    AuditEvent,
    Campaign,
    Consensus,
    Image,
    Ranking,
    Round,
    utcnow,
)
from service.rendering import (
    Outcome,
    drop_heartbeat,
    new_round,
    render_heartbeat,
    render_message,
    render_slot_free,
    run_step,
)
from service.transitions import audit, compare_and_set, get_campaign

log = logging.getLogger(__name__)

# A render whose message never left (the broker was down at commit) is sent after this grace.
UNSENT_GRACE = dt.timedelta(seconds=30)
# A render whose worker's heartbeat (contracts.heartbeat_key) is older than this is lost.
HEARTBEAT_STALE = dt.timedelta(seconds=HEARTBEAT_STALE_S)


def winner_image(round_: Round) -> Image | None:
    """The round's winner: the candidate its consensus put first (never the attention image)."""
    if round_.consensus is None:
        return None
    by_position = {image.position: image for image in round_.images}
    for position in round_.consensus.order:
        image = by_position.get(position)
        if image is not None and image.role == ImageRole.CANDIDATE:
            return image
    return None


def _count_rankings(session: Session, round_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Ranking).where(Ranking.round_id == round_id)
        )
        or 0
    )


def _open_round(session: Session, round_id: int) -> tuple[Round, Campaign] | None:
    """The round and its campaign while the round is open; else None (and the read ends)."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != RoundStatus.OPEN:
        session.rollback()
        return None
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    return round_, campaign


def close_if_ready(session: Session, round_id: int, now: dt.datetime | None = None) -> Outcome:
    """Close the round when its quorum is in; else nothing."""
    found = _open_round(session, round_id)
    if found is None:
        return Outcome()
    round_, campaign = found
    if _count_rankings(session, round_id) < campaign.config.annotators_per_round:
        session.rollback()
        return Outcome()
    return close_round(session, round_, now)


def after_ranking(round_id: int, app: Flask | None = None) -> None:
    """Close the round if that ranking completed its quorum: inline (fast path) or queued
    (``rankloop.coord.close_round``, :func:`service.jobs.send_close_round`).

    The ranking is already committed, so a failure here never fails its submission: it is
    recorded on the campaign (``close_failed``) and the next sweep closes the round (a round
    whose quorum is in is closed by the sweep, deadline or not: :func:`sweep`).
    """
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        if settings_of(app).inline_bookkeeping:
            run_step(close_if_ready, round_id, app=app)
        else:
            send_close_round(app, round_id)
    except Exception as error:
        with session_scope(app) as session:
            record_failure(session, round_id, error, step="close")


def close_round(session: Session, round_: Round, now: dt.datetime | None = None) -> Outcome:
    """Close an open round: consensus, then the next render message or the campaign's end."""
    from rankloop.core.consensus import AnnotatorReliability

    now = now or utcnow()
    campaign = get_campaign(session, round_.campaign_id, lock=True)
    if not compare_and_set(
        session, round_, RoundStatus.OPEN, status=RoundStatus.CLOSED, closed_at=now
    ):
        session.rollback()
        return Outcome()
    # An annotator the owner revoked and excluded counts in no consensus from then on.
    rankings = session.scalars(
        select(Ranking)
        .join(Annotator, Annotator.id == Ranking.annotator_id)
        .where(Ranking.round_id == round_.id, Annotator.excluded.is_(False))
        .order_by(Ranking.id)
    ).all()
    images = list(round_.images)
    settings = campaign.config
    reliability = (
        AnnotatorReliability.from_dict(campaign.reliability)
        if campaign.reliability
        else AnnotatorReliability()
    )
    row = round_consensus(
        round_.id,
        [(r.annotator_id, r.positions) for r in rankings],
        images,
        settings.consensus_method,
        reliability,
    )
    campaign.reliability = reliability.to_dict()
    session.add(row)
    order, pairwise, weights = row.order, row.pairwise, row.weights
    for annotator_id, weight in weights.items():
        session.execute(
            update(Annotator)
            .where(Annotator.id == annotator_id)
            .values(weight=weight)
            .execution_options(synchronize_session=False)
        )
    audit(
        session,
        "round_closed",
        campaign.id,
        round_.number,
        n_rankings=len(rankings),
        agreement=row.agreement,
        winner=order[0] if order else None,
    )
    outcome = Outcome(events=["closed"])
    if campaign.status in CAMPAIGN_ENDED:
        pass
    elif round_.number + 1 >= settings.rounds:
        campaign.status, campaign.finished_at = CampaignStatus.FINISHED, now
        audit(session, "campaign_finished", campaign.id, round_.number)
        outcome.events.append("finished")
    else:
        feed = candidate_feed(order, pairwise, images, settings.consensus_feed)
        outcome.renders.append(new_round(session, campaign, round_.number + 1, round_, feed))
    session.commit()
    return outcome


def round_consensus(
    round_id: int,
    rankings: Sequence[tuple[str, Any]],
    images: Sequence[Image],
    method: str,
    reliability: Any,
) -> Consensus:
    """One round's consensus as its database row, from its rankings ``(annotator id,
    positions)`` in the order they were stored; ``reliability`` (the campaign's
    :class:`~rankloop.core.consensus.AnnotatorReliability`) learns from the round. The live
    close and the offline re-run (:mod:`service.datasets.reconsensus`) both call this."""
    # (Imported on first use: scipy's import takes about a second; see warm_up_consensus.)
    from rankloop.core.consensus import aggregate

    attention = [i.position for i in images if i.role == ImageRole.ATTENTION]
    result = aggregate(
        list(rankings),
        len(images),
        method=method,
        reliability=reliability,
        known_worst=attention or None,
    )
    return Consensus(
        round_id=round_id,
        method=method,
        order=[int(p) for p in result.order],  # positions, best first
        scores=_as_list(result.scores) or [],
        weights={str(a): float(w) for a, w in dict(result.weights).items()},
        agreement=_as_float(result.agreement),
        pairwise=_as_list(getattr(result, "pairwise", None)),
        n_rankings=len(rankings),
    )


def _extend(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """Give an open round short of its quorum another deadline."""
    found = _open_round(session, round_id)
    if found is None:
        return Outcome()
    round_, campaign = found
    seconds = campaign.config.round_deadline_s
    outcome = Outcome()
    if compare_and_set(
        session,
        round_,
        RoundStatus.OPEN,
        deadline=now + dt.timedelta(seconds=seconds),
        extensions=round_.extensions + 1,
    ):
        audit(
            session,
            "round_extended",
            campaign.id,
            round_.number,
            n_rankings=_count_rankings(session, round_id),
            quorum=campaign.config.annotators_per_round,
        )
        outcome.events.append("extended")
    session.commit()
    return outcome


def _due(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """A round past its deadline: closed when its quorum is in, else extended."""
    closed = close_if_ready(session, round_id, now)
    return closed if closed.events else _extend(session, round_id, now)


def _resend(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """A render that never left, whose worker stopped beating (:func:`heartbeat_stale`), or that
    never came back within ``render_timeout_s``: sent again (the render job is idempotent, and a
    second result for the same round is refused by :func:`service.rendering.round_rendered`)."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != RoundStatus.RENDERING:
        session.rollback()
        return Outcome()
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    if round_.render_enqueued_at is None and not render_slot_free(session, campaign, round_.number):
        session.rollback()  # waiting for one of its owner's render slots: a later sweep sends it
        return Outcome()
    timeout = dt.timedelta(seconds=campaign.config.render_timeout_s)
    sent = round_.render_enqueued_at or (round_.created_at - timeout + UNSENT_GRACE)
    lost = sent + timeout <= now or (
        sent + HEARTBEAT_STALE <= now and heartbeat_stale(campaign.id, round_.number, now)
    )
    outcome = Outcome()
    if lost and compare_and_set(session, round_, RoundStatus.RENDERING, render_enqueued_at=now):
        audit(session, "round_render_resent", campaign.id, round_.number)
        outcome.renders.append(render_message(campaign, round_))
        session.commit()
        # The next beat is the new render's own: until then it waits for render_timeout_s
        # (a render queued behind others is not sent again and again).
        drop_heartbeat(campaign.id, round_.number)
        return outcome
    if round_.render_enqueued_at is not None and sent + HEARTBEAT_STALE <= now:
        _check_pickup(session, round_)
    session.commit()
    return outcome


PICKUP_FAILED = "render_pickup_failed"  # shown as the round's problem (service.api.events)


def _check_pickup(session: Session, round_: Round) -> None:
    """A render sent a while ago that no worker has started: when the render workers that beat
    all listen on another route (a broker configuration mismatch), say so on the round, once."""
    from service.health import render_workers

    if render_heartbeat(round_.campaign_id, round_.number) is not None:
        return
    mismatch = render_workers().mismatch
    if mismatch is None:
        return
    seen = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.campaign_id == round_.campaign_id,
        AuditEvent.round_number == round_.number,
        AuditEvent.kind == PICKUP_FAILED,
    )  # fmt: skip
    if not session.scalar(seen):
        log.error("round %s of %s: %s", round_.number, round_.campaign_id, mismatch)
        audit(session, PICKUP_FAILED, round_.campaign_id, round_.number, error=mismatch)


def heartbeat_stale(campaign_id: str, round_number: int, now: dt.datetime) -> bool:
    """Whether the round's render heartbeat exists and is older than ``HEARTBEAT_STALE``: its
    worker died mid-render, or finished and its result was lost. No heartbeat (the render is
    still queued, or the store cannot say) is not stale: ``render_timeout_s`` covers it."""
    beat = render_heartbeat(campaign_id, round_number)
    if beat is None:
        return False
    try:
        at = float(beat["at"])
    except (ValueError, KeyError, TypeError):
        return True  # a damaged heartbeat beats no more
    return now.replace(tzinfo=dt.UTC).timestamp() - at >= HEARTBEAT_STALE.total_seconds()


def sweep(session: Session, now: dt.datetime | None = None) -> Outcome:
    """Deadlines, lost closes and lost renders, one round at a time, each in its own
    transaction. A round whose step fails is logged and recorded in the audit log
    (``sweep_failed``), and the sweep goes on with the others; the next sweep tries that round
    again."""
    now = now or utcnow()
    due = session.scalars(
        select(Round.id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(
            Campaign.status == CampaignStatus.RUNNING,
            Round.status == RoundStatus.OPEN,
            Round.deadline <= now,
        )
    ).all()
    # Quorum in but still open: the close (inline, after the last ranking's commit) died with
    # its web process. Closed now, not at the deadline.
    full = session.scalars(
        select(Round.id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(
            Campaign.status == CampaignStatus.RUNNING,
            Round.status == RoundStatus.OPEN,
            Round.deadline > now,
            Round.n_rankings >= Campaign.settings["annotators_per_round"].as_integer(),
        )
    ).all()
    rendering = session.scalars(
        select(Round.id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Round.status == RoundStatus.RENDERING, Campaign.status.in_(CAMPAIGN_LIVE))
        .order_by(Round.id)  # the oldest waiting render takes a free render slot first
    ).all()
    session.rollback()
    outcome = Outcome()
    for step, round_ids in ((_due, due), (close_if_ready, full), (_resend, rendering)):
        for round_id in round_ids:
            try:
                done = step(session, round_id, now)
            except Exception as error:
                session.rollback()
                record_failure(session, round_id, error)
                continue
            outcome.renders += done.renders
            outcome.events += done.events
    return outcome


def record_failure(session: Session, round_id: int, error: Exception, step: str = "sweep") -> None:
    """Log the failure of ``step`` on a round, and audit it on its campaign (``<step>_failed``)
    unless the round's last event is this same failure (a round that keeps failing is not
    recorded again at every sweep)."""
    log.exception("%s: round %s failed", step, round_id)
    kind, message = f"{step}_failed", f"{type(error).__name__}: {error}"
    try:
        round_ = session.get(Round, round_id)
        if round_ is not None:
            last = session.scalar(
                select(AuditEvent)
                .where(
                    AuditEvent.campaign_id == round_.campaign_id,
                    AuditEvent.round_number == round_.number,
                )
                .order_by(AuditEvent.id.desc())
                .limit(1)
            )
            if last is None or last.kind != kind or last.data != {"error": message}:
                audit(session, kind, round_.campaign_id, round_.number, error=message)
        session.commit()
    except Exception:  # the database itself is failing: the log has it
        session.rollback()
        log.exception("%s: could not record the failure of round %s", step, round_id)


def _as_list(value: Any) -> Any:
    return None if value is None else np.asarray(value, dtype=float).tolist()


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


__all__ = [
    "HEARTBEAT_STALE",
    "UNSENT_GRACE",
    "close_if_ready",
    "close_round",
    "heartbeat_stale",
    "record_failure",
    "sweep",
    "winner_image",
]
