"""A round closed: on its quorum (:func:`close_if_ready`, right after the ranking that brought
it) or at its deadline (:func:`sweep`); the consensus of its rankings, then the next round's
render or the campaign's end. A round short of its quorum at the deadline is extended, never
guessed. The sweep also sends again the renders that never left or never came back.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rankloop.core.contracts import ATTENTION, CAMPAIGN_ENDED, CANDIDATE
from rankloop.core.round_step import candidate_feed
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
from service.rendering import Outcome, new_round, render_message
from service.transitions import audit, compare_and_set, get_campaign

log = logging.getLogger(__name__)

# A render whose message never left (the broker was down at commit) is sent after this grace.
UNSENT_GRACE = dt.timedelta(seconds=30)


def winner_image(round_: Round) -> Image | None:
    """The round's winner: the candidate its consensus put first (never the attention image)."""
    if round_.consensus is None:
        return None
    by_position = {image.position: image for image in round_.images}
    for position in round_.consensus.order:
        image = by_position.get(position)
        if image is not None and image.role == CANDIDATE:
            return image
    return None


def _count_rankings(session: Session, round_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Ranking).where(Ranking.round_id == round_id)
        )
        or 0
    )


def close_if_ready(session: Session, round_id: int, now: dt.datetime | None = None) -> Outcome:
    """Close the round when its quorum is in; else nothing."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != "open":
        session.rollback()
        return Outcome()
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    if _count_rankings(session, round_id) < int(campaign.settings["annotators_per_round"]):
        session.rollback()
        return Outcome()
    return close_round(session, round_, now)


def close_round(session: Session, round_: Round, now: dt.datetime | None = None) -> Outcome:
    """Close an open round: consensus, then the next render message or the campaign's end."""
    # (Imported on first use: scipy's import takes about a second; see warm_up_consensus.)
    from rankloop.core.consensus import AnnotatorReliability, aggregate

    now = now or utcnow()
    campaign = get_campaign(session, round_.campaign_id, lock=True)
    if not compare_and_set(session, round_, "open", status="closed", closed_at=now):
        session.rollback()
        return Outcome()
    rankings = session.scalars(
        select(Ranking).where(Ranking.round_id == round_.id).order_by(Ranking.id)
    ).all()
    images = list(round_.images)
    settings = campaign.settings
    method = str(settings.get("consensus_method", "auto"))
    reliability = (
        AnnotatorReliability.from_dict(campaign.reliability)
        if campaign.reliability
        else AnnotatorReliability()
    )
    attention = [i.position for i in images if i.role == ATTENTION]
    result = aggregate(
        [(r.annotator_id, r.positions) for r in rankings],
        len(images),
        method=method,
        reliability=reliability,
        known_worst=attention or None,
    )
    campaign.reliability = reliability.to_dict()
    order = [int(p) for p in result.order]  # positions, best first
    pairwise = _as_list(getattr(result, "pairwise", None))
    weights = {str(a): float(w) for a, w in dict(result.weights).items()}
    session.add(
        Consensus(
            round_id=round_.id,
            method=method,
            order=order,
            scores=_as_list(result.scores) or [],
            weights=weights,
            agreement=_as_float(result.agreement),
            pairwise=pairwise,
            n_rankings=len(rankings),
        )
    )
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
        agreement=_as_float(result.agreement),
        winner=order[0] if order else None,
    )
    outcome = Outcome(events=["closed"])
    if campaign.status in CAMPAIGN_ENDED:
        pass
    elif round_.number + 1 >= int(settings["rounds"]):
        campaign.status, campaign.finished_at = "finished", now
        audit(session, "campaign_finished", campaign.id, round_.number)
        outcome.events.append("finished")
    else:
        # (A campaign from before the setting existed was told the order.)
        feed = candidate_feed(order, pairwise, images, settings.get("consensus_feed", "order"))
        outcome.renders.append(new_round(session, campaign, round_.number + 1, round_, feed))
    session.commit()
    return outcome


def _extend(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """Give an open round short of its quorum another deadline."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != "open":
        session.rollback()
        return Outcome()
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    seconds = float(campaign.settings["round_deadline_s"])
    outcome = Outcome()
    if compare_and_set(
        session,
        round_,
        "open",
        deadline=now + dt.timedelta(seconds=seconds),
        extensions=round_.extensions + 1,
    ):
        audit(
            session,
            "round_extended",
            campaign.id,
            round_.number,
            n_rankings=_count_rankings(session, round_id),
            quorum=campaign.settings["annotators_per_round"],
        )
        outcome.events.append("extended")
    session.commit()
    return outcome


def _due(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """A round past its deadline: closed when its quorum is in, else extended."""
    closed = close_if_ready(session, round_id, now)
    return closed if closed.events else _extend(session, round_id, now)


def _resend(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """A render that never left, or never came back within ``render_timeout_s``: sent again
    (the render job is idempotent)."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != "rendering":
        session.rollback()
        return Outcome()
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    timeout = dt.timedelta(seconds=float(campaign.settings.get("render_timeout_s", 900)))
    sent = round_.render_enqueued_at or (round_.created_at - timeout + UNSENT_GRACE)
    outcome = Outcome()
    if sent + timeout <= now and compare_and_set(
        session, round_, "rendering", render_enqueued_at=now
    ):
        audit(session, "round_render_resent", campaign.id, round_.number)
        outcome.renders.append(render_message(campaign, round_))
    session.commit()
    return outcome


def sweep(session: Session, now: dt.datetime | None = None) -> Outcome:
    """Deadlines and lost renders, one round at a time, each in its own transaction. A round
    whose step fails is logged and recorded in the audit log (``sweep_failed``), and the sweep
    goes on with the others; the next sweep tries that round again."""
    now = now or utcnow()
    due = session.scalars(
        select(Round.id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Campaign.status == "running", Round.status == "open", Round.deadline <= now)
    ).all()
    rendering = session.scalars(
        select(Round.id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Round.status == "rendering", Campaign.status.in_(("running", "paused")))
    ).all()
    session.rollback()
    outcome = Outcome()
    for step, round_ids in ((_due, due), (_resend, rendering)):
        for round_id in round_ids:
            try:
                done = step(session, round_id, now)
            except Exception as error:
                session.rollback()
                _record_failure(session, round_id, error)
                continue
            outcome.renders += done.renders
            outcome.events += done.events
    return outcome


def _record_failure(session: Session, round_id: int, error: Exception) -> None:
    """Log the failure, and audit it unless the round's last event is this same failure (a
    round that keeps failing is not recorded again at every sweep)."""
    log.exception("sweep: round %s failed", round_id)
    message = f"{type(error).__name__}: {error}"
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
            if last is None or last.kind != "sweep_failed" or last.data != {"error": message}:
                audit(session, "sweep_failed", round_.campaign_id, round_.number, error=message)
        session.commit()
    except Exception:  # the database itself is failing: the log has it
        session.rollback()
        log.exception("sweep: could not record the failure of round %s", round_id)


def _as_list(value: Any) -> Any:
    return None if value is None else np.asarray(value, dtype=float).tolist()


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


__all__ = ["UNSENT_GRACE", "close_if_ready", "close_round", "sweep", "winner_image"]
