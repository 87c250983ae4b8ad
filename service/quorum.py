"""Whether an open round closes now, and why (``rounds.close_reason``).

A fixed quorum closes a round on ``annotators_per_round`` rankings (``cap``). An adaptive one
(``quorum: adaptive``) waits for ``min_annotators_per_round`` and then closes as soon as the
decision the round feeds is settled with probability ``settle_confidence``
(:mod:`rankloop.core.settle`); while it is not, the round's own ``quorum`` is raised by one, so
leasing (:func:`service.statements.lease_room_sql`) asks one more annotator, up to the cap. A
round past its deadline with the minimum in closes unsettled (``deadline``) rather than wait on;
one short of it is extended as a fixed round is (:mod:`service.sweep`). A round that closes
while the annotator holding its last slot, a straggler, still works (its slot was offered to
one more annotator: :mod:`service.stragglers`) closes for ``straggler``.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import first_quorum
from rankloop.core.contracts import MOVE_ITEMS, CloseReason, ImageRole, RoundStatus, TaskStatus
from rankloop.core.settle import Settlement
from service.driver import TASKS
from service.models import Annotator, Campaign, Ranking, Round
from service.statements import quorum_reached, round_quorum
from service.transitions import audit, compare_and_set

log = logging.getLogger(__name__)


def round_settlement(session: Session, round_: Round, campaign: Campaign) -> Settlement:
    """How sure the round's rankings so far make its decision (:mod:`rankloop.core.settle`),
    weighted as its consensus would weigh them now (an excluded annotator counts in none)."""
    # (Imported on first use: the consensus imports scipy, about a second; see closing.)
    from rankloop.core.settle import round_seed, settle_round

    rows = session.execute(
        select(Ranking.annotator_id, Ranking.positions, Ranking.attention_passed)
        .join(Annotator, Annotator.id == Ranking.annotator_id)
        .where(Ranking.round_id == round_.id, Annotator.excluded.is_(False))
    ).all()
    if not rows:
        return Settlement(decision=None, confidence=0.0)
    settings = campaign.config
    images = list(round_.images)
    move_items = (round_.stats or {}).get(MOVE_ITEMS)
    return settle_round(
        [(row.annotator_id, row.positions) for row in rows],
        len(images),
        method=settings.consensus_method,
        reliability=campaign.reliability,
        known_worst=[i.position for i in images if i.role == ImageRole.ATTENTION],
        failed_check=[row.annotator_id for row in rows if row.attention_passed is False],
        move_items=move_items if isinstance(move_items, list) and move_items else None,
        feed=settings.consensus_feed,
        seed=round_seed(round_.id),
    )


def close_reason(
    session: Session, round_: Round, campaign: Campaign, n_rankings: int, deadline: bool = False
) -> CloseReason | None:
    """Why the open round closes now (``deadline``: its deadline has passed), or None. An
    adaptive round that must ask one more annotator has its ``quorum`` raised here (in the
    caller's transaction, which commits it)."""
    settings = campaign.config
    quorum = round_quorum(settings, round_.quorum)
    if settings.quorum != "adaptive":
        if not quorum_reached(settings, n_rankings, round_.quorum):
            return None
        return _or_straggler(session, round_, CloseReason.CAP)
    if n_rankings < quorum and not (deadline and n_rankings >= first_quorum(settings)):
        return None
    settled = round_settlement(session, round_, campaign)
    log.debug("round %s: %s rankings, %s", round_.id, n_rankings, settled)
    if settled.settled(settings.settle_confidence):
        return _or_straggler(session, round_, CloseReason.SETTLED)
    if n_rankings >= settings.annotators_per_round:
        return _or_straggler(session, round_, CloseReason.CAP)
    if deadline:
        return CloseReason.DEADLINE
    if quorum <= n_rankings and compare_and_set(
        session, round_, RoundStatus.OPEN, quorum=n_rankings + 1
    ):
        audit(
            session,
            "round_quorum_raised",
            campaign.id,
            round_.number,
            n_rankings=n_rankings,
            quorum=n_rankings + 1,
            confidence=round(settled.confidence, 4),
        )
    return None


def _or_straggler(session: Session, round_: Round, reason: CloseReason) -> CloseReason:
    """``straggler`` when the round closes with its last slot offered to one more annotator
    and a task on it still unanswered (the slower of the two did not keep it waiting)."""
    if round_.straggler_at is None:
        return reason
    waiting = session.scalar(
        select(func.count())
        .select_from(TASKS)
        .where(TASKS.c.round_id == round_.id, TASKS.c.status == TaskStatus.LEASED)
    )
    return CloseReason.STRAGGLER if waiting else reason


__all__ = ["close_reason", "round_settlement"]
