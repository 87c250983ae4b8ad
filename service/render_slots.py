"""An owner's render slots (``RENDER_SLOTS_PER_OWNER``): how many renders, rounds and previews,
one owner key has in flight, and whether one more may go.

Renders are scheduled fairly across owners by this cap (a render over it waits in the database:
:mod:`service.render_sending`), and within an owner in :mod:`service.render_queue`'s order.
"""

from __future__ import annotations

import hashlib

from flask import has_app_context
from sqlalchemy import and_, func, not_, select, true
from sqlalchemy.orm import Session

from rankloop.core.contracts import CAMPAIGN_LIVE, RoundStatus
from rankloop.core.settings import load_settings
from service.config import app_settings
from service.models import Campaign, Round
from service.preview_renders import previews_in_flight
from service.transitions import is_postgres


def _slots(slots: int | None) -> int:
    if slots is None:
        # Outside an app (a script's session), this process's settings: the cap holds there too.
        slots = (app_settings() if has_app_context() else load_settings()).render_slots_per_owner
    return slots


def render_slot_free(
    session: Session, campaign: Campaign, round_number: int, slots: int | None = None
) -> bool:
    """Whether the campaign's owner has fewer than ``slots`` (``RENDER_SLOTS_PER_OWNER``)
    renders in flight (rounds sent and not yet back, and previews:
    :func:`service.preview_renders.previews_in_flight`) besides round ``round_number``."""
    slots = _slots(slots)
    if slots <= 0:
        return True
    return _in_flight(session, campaign.owner_key_id, slots, (campaign.id, round_number)) < slots


def owner_slot_free(session: Session, owner_key_id: int | None, slots: int | None = None) -> bool:
    """Whether the owner may send one more render (a preview, or a waiting round given a freed
    slot): the same cap as :func:`render_slot_free`'s, counting rounds and previews. The caller
    records what it sends in the same transaction, which holds the owner's lock."""
    slots = _slots(slots)
    return slots <= 0 or _in_flight(session, owner_key_id, slots, None) < slots


def _in_flight(
    session: Session, owner: int | None, slots: int, besides: tuple[str, int] | None
) -> int:
    """The owner's renders in flight, rounds (``besides`` one) then previews; the previews are
    counted (and settled, which reads the store) only while the rounds leave a slot."""
    if is_postgres(session):
        # One check of an owner's slots at a time, across coordinators: the caller's transaction
        # holds the lock until it commits the slot it takes (or rolls back), so a second check
        # counts the first one's render instead of taking the same free slot.
        key = hashlib.blake2b(f"render-slots:{owner}".encode(), digest_size=8).digest()
        session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(key, signed=True))))
    in_flight = (
        session.scalar(
            select(func.count())
            .select_from(Round)
            .join(Campaign, Campaign.id == Round.campaign_id)
            .where(
                Campaign.owner_key_id.is_(None)
                if owner is None
                else Campaign.owner_key_id == owner,
                # A stopped campaign's unfinished render holds no slot (its result changes nothing).
                Campaign.status.in_(CAMPAIGN_LIVE),
                Round.status == RoundStatus.RENDERING,
                Round.render_enqueued_at.is_not(None),
                true()
                if besides is None
                else not_(and_(Round.campaign_id == besides[0], Round.number == besides[1])),
            )
        )
        or 0
    )
    if in_flight >= slots:
        return in_flight
    return in_flight + previews_in_flight(session, owner)


__all__ = ["owner_slot_free", "render_slot_free"]
