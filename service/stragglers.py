"""No waiting for stragglers: a round's last slot offered to one more annotator.

A round that has all but its last ranking, whose last lease has run ``straggler_after`` times
the campaign's median ranking time (lease to ranking, over its latest rankings), is offered to
one more annotator: its ``straggler_at`` is set, and leasing's room for it grows by one
(:func:`service.statements.lease_room`). The first ranking to arrive fills the slot and closes
the round (``straggler``: :mod:`service.quorum`); the other, late, is kept, credited and
exported as late, never refused (:func:`service.submission.submit`). Once per round, and only
with one lease running on it: a round is never leased beyond its quorum otherwise. The sweep
(:mod:`service.sweep`) runs this; a campaign without the setting (the default) is left alone.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rankloop.core.contracts import RoundStatus
from service.driver import CAMPAIGNS, ROUNDS, TASKS
from service.models import Assignment, Campaign, Ranking, Round
from service.statements import lease_running, round_leasable, round_quorum_sql
from service.transitions import audit, compare_and_set

#: The median is measured over the campaign's latest rankings, and only once it has a few.
TIMED_RANKINGS: Final = 50
MIN_TIMED_RANKINGS: Final = 3


def median_ranking_s(session: Session, campaign_id: str) -> float | None:
    """The campaign's median seconds from lease to ranking over its latest
    :data:`TIMED_RANKINGS` on-time rankings; None with fewer than :data:`MIN_TIMED_RANKINGS`."""
    rows = session.execute(
        select(Ranking.created_at, Assignment.created_at)
        .join(Assignment, Assignment.id == Ranking.assignment_id)
        .join(Round, Round.id == Ranking.round_id)
        .where(Round.campaign_id == campaign_id, Ranking.late.is_(False))
        .order_by(Ranking.id.desc())
        .limit(TIMED_RANKINGS)
    ).all()
    times = [max(0.0, (ranked - leased).total_seconds()) for ranked, leased in rows]
    return statistics.median(times) if len(times) >= MIN_TIMED_RANKINGS else None


def straggling_rounds(session: Session, now: dt.datetime) -> list[int]:
    """Open rounds of running campaigns that offer stragglers, not offered yet, one ranking
    short of their quorum, with that one lease running."""
    r, c, t = ROUNDS, CAMPAIGNS, TASKS
    running = (
        select(func.count())
        .select_from(t)
        .where(t.c.round_id == r.c.id, lease_running(now))
        .scalar_subquery()
    )
    return list(
        session.scalars(
            select(r.c.id)
            .join(c, c.c.id == r.c.campaign_id)
            .where(
                round_leasable(r, c),
                r.c.straggler_at.is_(None),
                c.c.settings["straggler_after"].as_float().is_not(None),
                r.c.n_rankings + 1 == round_quorum_sql(r, c.c.settings),
                running == 1,
            )
            .order_by(r.c.id)
        ).all()
    )


def offer_last_slot(session: Session, round_id: int, now: dt.datetime) -> bool:
    """Offer the round's last slot to one more annotator when its running lease has run past
    ``straggler_after`` times the campaign's median ranking time; True when offered (and
    committed)."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != RoundStatus.OPEN or round_.straggler_at is not None:
        session.rollback()
        return False
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    after = campaign.config.straggler_after
    median = median_ranking_s(session, campaign.id) if after else None
    leased_at = session.scalar(
        select(func.min(TASKS.c.created_at)).where(TASKS.c.round_id == round_id, lease_running(now))
    )
    if after is None or median is None or leased_at is None:
        session.rollback()
        return False
    waited = (now - leased_at).total_seconds()
    if waited <= after * median or not compare_and_set(
        session, round_, RoundStatus.OPEN, straggler_at=now
    ):
        session.rollback()
        return False
    audit(
        session,
        "round_straggler_offered",
        campaign.id,
        round_.number,
        waited_s=round(waited, 1),
        median_s=round(median, 1),
    )
    session.commit()
    return True


__all__ = [
    "MIN_TIMED_RANKINGS",
    "TIMED_RANKINGS",
    "median_ranking_s",
    "offer_last_slot",
    "straggling_rounds",
]
