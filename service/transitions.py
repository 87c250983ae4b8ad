"""What every step of the round lifecycle uses: the campaign lock, the compare-and-set
transition of a round, and the audit log.

Transitions are compare-and-set updates on ``(status, version)``: when two coordinators or two
bookkeeping workers race, exactly one UPDATE matches and the other sees ``rowcount == 0`` and
backs off. Campaign rows are locked ``FOR UPDATE`` on PostgreSQL; SQLite transactions start with
``BEGIN IMMEDIATE`` (see :mod:`service.db`), which serialises writers outright.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rankloop.core.contracts import RoundStatus
from rankloop.core.errors import NotFound
from service import notify
from service.models import AuditEvent, Campaign, Round


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def audit(
    session: Session,
    event: str,
    campaign_id: str | None = None,
    round_number: int | None = None,
    actor: str | None = None,
    **data: Any,
) -> None:
    """Record ``event`` in the audit log (written with the step's commit)."""
    session.add(
        AuditEvent(
            kind=event,
            campaign_id=campaign_id,
            round_number=round_number,
            actor=actor,
            data=data or None,
        )
    )


def owner_actor(owner_key_id: int | None) -> str:
    """The audit log's actor of an owner key (None: the admin token)."""
    return "admin" if owner_key_id is None else f"owner-key:{owner_key_id}"


def get_campaign(session: Session, campaign_id: str, *, lock: bool = False) -> Campaign:
    """The campaign, or NotFound; ``lock``: locked for this transaction (and reloaded)."""
    query = select(Campaign).where(Campaign.id == campaign_id)
    if lock and is_postgres(session):
        query = query.with_for_update()
    campaign = session.scalar(query.execution_options(populate_existing=lock))
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    return campaign


def find_round(session: Session, campaign_id: str, number: int) -> Round | None:
    return session.scalar(
        select(Round).where(Round.campaign_id == campaign_id, Round.number == number)
    )


def rowcount(result: Any) -> int:
    return int(result.rowcount)  # a CursorResult: UPDATE reports the rows it matched


def compare_and_set(
    session: Session, round_: Round, expected_status: RoundStatus, **values: Any
) -> bool:
    """Move ``round_`` on when it is still ``expected_status`` at the version this caller read:
    True when this caller won the transition (and ``round_`` is reloaded)."""
    result = session.execute(
        update(Round)
        .where(
            Round.id == round_.id, Round.status == expected_status, Round.version == round_.version
        )
        .values(version=round_.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return False
    if "status" in values:  # live streams are told at commit (a Core UPDATE: no flush sees it)
        notify.changed(session, campaign_id=round_.campaign_id)
    session.refresh(round_)
    return True


__all__ = [
    "audit",
    "compare_and_set",
    "find_round",
    "get_campaign",
    "is_postgres",
    "owner_actor",
    "rowcount",
]
