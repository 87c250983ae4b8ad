"""A round closed: on its quorum (:func:`close_if_ready`, right after the ranking that brought it:
:func:`after_ranking`) or at its deadline (:func:`service.sweep.sweep`, which extends a round
short of its quorum, never guessed); the consensus of its rankings, then the next round's
render or the campaign's end.
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

from rankloop.core.campaign_settings import IMAGE_SET, verdict_wanted
from rankloop.core.contracts import (
    CAMPAIGN_ENDED,
    CampaignStatus,
    CloseReason,
    ImageRole,
    RoundStatus,
)
from rankloop.core.round_step import candidate_feed
from service import verdicts
from service.config import settings_of
from service.db import session_scope
from service.image_sets.rounds import open_next
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
from service.quorum import close_reason
from service.rendering import (
    Outcome,
    new_round,
    run_step,
)
from service.transitions import audit, compare_and_set, get_campaign

log = logging.getLogger(__name__)


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


def count_rankings(session: Session, round_id: int) -> int:
    """The round's stored rankings (excluded annotators' too: the quorum counts them)."""
    return (
        session.scalar(
            select(func.count()).select_from(Ranking).where(Ranking.round_id == round_id)
        )
        or 0
    )


def open_round(session: Session, round_id: int) -> tuple[Round, Campaign] | None:
    """The round and its campaign while the round is open; else None (and the read ends)."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != RoundStatus.OPEN:
        session.rollback()
        return None
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    return round_, campaign


def close_if_ready(
    session: Session, round_id: int, now: dt.datetime | None = None, deadline: bool = False
) -> Outcome:
    """Close the round when its quorum says so (:func:`service.quorum.close_reason`;
    ``deadline``: its deadline has passed); else nothing, but an adaptive quorum raised by
    one while the round's decision is unsettled."""
    found = open_round(session, round_id)
    if found is None:
        return Outcome()
    round_, campaign = found
    reason = close_reason(session, round_, campaign, count_rankings(session, round_id), deadline)
    if reason is None:
        session.commit()  # (a raised quorum)
        return Outcome()
    return close_round(session, round_, now, reason)


def after_ranking(round_id: int, app: Flask | None = None) -> None:
    """Close the round if that ranking completed its quorum: inline (fast path) or queued
    (``rankloop.coord.close_round``, :func:`service.jobs.send_close_round`).

    The ranking is already committed, so a failure here never fails its submission: it is
    recorded on the campaign (``close_failed``) and the next sweep closes the round (a round
    whose quorum is in is closed by the sweep, deadline or not: :func:`service.sweep.sweep`).
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


def close_round(
    session: Session,
    round_: Round,
    now: dt.datetime | None = None,
    reason: CloseReason = CloseReason.CAP,
) -> Outcome:
    """Close an open round (for ``reason``): consensus, then the next render message or the
    campaign's end."""
    from rankloop.core.consensus import AnnotatorReliability

    now = now or utcnow()
    campaign = get_campaign(session, round_.campaign_id, lock=True)
    if not compare_and_set(
        session,
        round_,
        RoundStatus.OPEN,
        status=RoundStatus.CLOSED,
        closed_at=now,
        close_reason=reason,
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
        reason=str(reason),
        agreement=row.agreement,
        winner=order[0] if order else None,
    )
    outcome = Outcome(events=["closed"])
    if campaign.status in CAMPAIGN_ENDED:
        pass
    elif verdicts.is_verdict(round_):
        verdicts.conclude(session, campaign, round_, now)
        outcome.events.append("finished")
    elif settings.kind == IMAGE_SET:  # no render: a queued item opens, or the set is done
        if not open_next(session, campaign.id, now):
            campaign.status, campaign.finished_at = CampaignStatus.FINISHED, now
            audit(session, "campaign_finished", campaign.id, round_.number)
            outcome.events.append("finished")
    elif (
        round_.number + 1 >= settings.rounds
        and verdict_wanted(settings)
        and (verdicts.open_final(session, campaign, now))
    ):
        outcome.events.append("verdict")
    elif round_.number + 1 >= settings.rounds:
        campaign.status, campaign.finished_at = CampaignStatus.FINISHED, now
        audit(session, "campaign_finished", campaign.id, round_.number)
        outcome.events.append("finished")
    else:
        feed = candidate_feed(
            order, pairwise, images, settings.consensus_feed, row.agreement, row.n_rankings
        )
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
    "after_ranking",
    "close_if_ready",
    "close_round",
    "count_rankings",
    "open_round",
    "record_failure",
    "round_consensus",
    "winner_image",
]
