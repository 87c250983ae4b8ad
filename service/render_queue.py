"""The order in which renders waiting for a render slot get one: the one place of that rule.

A render waits (its round ``rendering``, in a live campaign, never sent or sent back to wait,
``render_enqueued_at`` null) while its owner has every render slot busy
(:func:`service.render_slots.render_slot_free`). Owners never share slots, so one owner's
backlog cannot hold another owner's renders. Within an owner, slots go round-robin across the
owner's *groups* (a study, all its campaigns together; a campaign outside any study, on its
own):

1. a group's renders go oldest first, and every group's first waiting render comes before any
   group's second (its *turn*);
2. within a turn, the group whose last render was sent longest ago goes first (a group never
   sent yet, first of all: a new study or campaign starts at once);
3. then the oldest render.

So a plain campaign's render waits behind at most one render of each other study or campaign of
its owner, however many a 200-prompt study has waiting, and two studies of one owner alternate.

Every sender follows it: a slot freed (a render's result or final failure recorded, a preview's
slot given back) goes at once to the first render here
(:func:`service.render_sending.send_waiting`); a new render sent from a request is kept waiting
when a render of its owner is ahead of it here, that render going out in its place
(:func:`service.render_sending.send_renders`); and the sweep, the safety net, sends waiting
renders in this order (:func:`service.sweep.sweep`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from rankloop.core.contracts import CAMPAIGN_LIVE, RoundStatus
from service.models import Campaign, Round

# The reason audited when a waiting render gets a slot (round_render_resent; the metric
# rankloop_renders_resent_total{reason}).
SLOT_FREED: Final = "slot_freed"

_Query = TypeVar("_Query", bound=Select)  # type: ignore[type-arg]  # any row shape

ANY_OWNER: Final = object()  # waiting_in_turn: every owner's renders


@dataclass(frozen=True)
class Waiting:
    round_id: int
    campaign_id: str
    round_number: int
    owner_key_id: int | None


def waiting_in_turn(
    session: Session, owner_key_id: int | object | None = ANY_OWNER, limit: int | None = None
) -> list[Waiting]:
    """The waiting renders (of one owner, or of all), in the order they get a slot: per owner,
    round-robin across its studies and plain campaigns (the module's rule)."""
    group = func.coalesce(Campaign.study_id, Campaign.id)

    def of_owner(query: _Query) -> _Query:
        if owner_key_id is ANY_OWNER:
            return query
        return query.where(
            Campaign.owner_key_id.is_(None)
            if owner_key_id is None
            else Campaign.owner_key_id == owner_key_id
        )

    live = Campaign.status.in_(CAMPAIGN_LIVE)
    # When each group's last render was sent (render_enqueued_at stays on a round once open).
    served = of_owner(
        select(
            Campaign.owner_key_id.label("owner"),
            group.label("grp"),
            func.max(Round.render_enqueued_at).label("last"),
        )
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(live)
        .group_by(Campaign.owner_key_id, group)
    ).subquery()
    turn = func.row_number().over(
        partition_by=(Campaign.owner_key_id, group), order_by=(Round.created_at, Round.id)
    )
    waiting = of_owner(
        select(
            Round.id,
            Round.campaign_id,
            Round.number,
            Round.created_at,
            Campaign.owner_key_id,
            group.label("grp"),
            turn.label("turn"),
        )
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(live, Round.status == RoundStatus.RENDERING, Round.render_enqueued_at.is_(None))
    ).subquery()
    same_owner = or_(
        waiting.c.owner_key_id == served.c.owner,
        and_(waiting.c.owner_key_id.is_(None), served.c.owner.is_(None)),
    )
    ordered = (
        select(waiting.c.id, waiting.c.campaign_id, waiting.c.number, waiting.c.owner_key_id)
        .outerjoin(served, and_(same_owner, waiting.c.grp == served.c.grp))
        .order_by(
            waiting.c.turn,
            served.c.last.asc().nulls_first(),
            waiting.c.created_at,
            waiting.c.id,
        )
    )
    if limit is not None:
        ordered = ordered.limit(limit)
    return [Waiting(*row) for row in session.execute(ordered).all()]


def first_waiting(session: Session, owner_key_id: int | None) -> Waiting | None:
    """The owner's waiting render that gets the next free slot, if any."""
    found = waiting_in_turn(session, owner_key_id, limit=1)
    return found[0] if found else None


__all__ = ["ANY_OWNER", "SLOT_FREED", "Waiting", "first_waiting", "waiting_in_turn"]
