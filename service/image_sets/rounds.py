"""An image set's rounds after one closes: the next queued item opens in its place (at most
:data:`~rankloop.core.image_sets.OPEN_ITEMS` are open at once, so choosing a task stays cheap),
and the campaign finishes when no item is open or queued. Called by
:func:`service.closing.close_round` inside its transaction, with the campaign locked.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rankloop.core.contracts import RoundStatus
from rankloop.core.image_sets import OPEN_ITEMS
from service.models import Round


def open_next(session: Session, campaign_id: str, now: dt.datetime) -> bool:
    """Open queued items up to the window; whether any item is still open or queued."""
    counts = dict(
        session.execute(
            select(Round.status, func.count())
            .where(Round.campaign_id == campaign_id,
                   Round.status.in_((RoundStatus.OPEN, RoundStatus.QUEUED)))
            .group_by(Round.status)
        ).all()
    )  # fmt: skip
    room = min(OPEN_ITEMS - counts.get(RoundStatus.OPEN, 0), counts.get(RoundStatus.QUEUED, 0))
    if room > 0:
        queued = (
            select(Round.id)
            .where(Round.campaign_id == campaign_id, Round.status == RoundStatus.QUEUED)
            .order_by(Round.number)
            .limit(room)
        )
        session.execute(
            update(Round)
            .where(Round.id.in_(queued.scalar_subquery()))
            .values(status=RoundStatus.OPEN, opened_at=now, version=Round.version + 1)
            .execution_options(synchronize_session=False)
        )
    return bool(counts)


__all__ = ["open_next"]
