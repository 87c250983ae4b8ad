"""The render slot a preview holds (:mod:`service.api.previews`), in the audit log.

A preview names no campaign: its render is in the audit log, as ``PREVIEW_SENT`` by its owner
(campaign_id: the preview's render id), until its image or its failure is in the store
(``PREVIEW_DONE``), and holds one of its owner's render slots meanwhile
(:mod:`service.render_slots`). A preview is never sent again, so one lost with its worker stops
counting after ``PREVIEW_HOLD_S``.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.storage import round_prefix
from service.models import AuditEvent, utcnow
from service.render_heartbeats import render_heartbeat, store_call
from service.transitions import audit, owner_actor

PREVIEW_SENT: Final = "preview_render_sent"
PREVIEW_DONE: Final = "preview_render_done"
PREVIEW_HOLD_S: Final = 600.0


def preview_sent(session: Session, owner_key_id: int | None, render_id: str) -> None:
    """Record a preview render about to be sent (committed by the caller)."""
    audit(session, PREVIEW_SENT, render_id, 0, actor=owner_actor(owner_key_id))


def preview_done(session: Session, owner_key_id: int | None, render_id: str) -> None:
    """Record that a preview render holds no slot any more (finished, failed or unsent)."""
    audit(session, PREVIEW_DONE, render_id, 0, actor=owner_actor(owner_key_id))


def previews_in_flight(
    session: Session, owner_key_id: int | None, now: dt.datetime | None = None
) -> int:
    """The owner's preview renders in flight: sent within ``PREVIEW_HOLD_S``, with neither the
    manifest nor a failure in the store yet (one found finished is recorded, with the caller's
    commit). A store that cannot say leaves the preview counted."""
    actor = owner_actor(owner_key_id)
    since = (now or utcnow()) - dt.timedelta(seconds=PREVIEW_HOLD_S)
    done = select(AuditEvent.campaign_id).where(
        AuditEvent.kind == PREVIEW_DONE, AuditEvent.actor == actor, AuditEvent.at >= since
    )
    pending = session.scalars(
        select(AuditEvent.campaign_id).where(
            AuditEvent.kind == PREVIEW_SENT,
            AuditEvent.actor == actor,
            AuditEvent.at >= since,
            AuditEvent.campaign_id.not_in(done),
        )
    ).all()
    count = 0
    for render_id in pending:
        if render_id and _preview_finished(render_id):
            preview_done(session, owner_key_id, render_id)
        else:
            count += 1
    return count


def _preview_finished(render_id: str) -> bool:
    if store_call("exists", f"{round_prefix(render_id, 0)}/manifest.json"):
        return True
    beat = render_heartbeat(render_id, 0)
    return bool(beat and beat.get("error"))


__all__ = [
    "PREVIEW_DONE",
    "PREVIEW_HOLD_S",
    "PREVIEW_SENT",
    "preview_done",
    "preview_sent",
    "previews_in_flight",
]
