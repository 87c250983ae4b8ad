"""Sending render messages whose rows are committed, or keeping them waiting for a render slot.

A step returns its render messages (:class:`service.rendering.Outcome`); they go out here after
its commit (:func:`service.rendering.run_step`), so a message never announces a row that does
not exist yet. A send that fails leaves the round ``rendering`` with no ``render_enqueued_at``,
and the sweep (:func:`service.sweep.sweep`) sends it again. A render over its owner's render
slots (:mod:`service.render_slots`) waits, unsent, and goes out in
:mod:`service.render_queue`'s order as soon as a slot frees (:func:`send_waiting`, after the
commit that frees it; the sweep is the safety net).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any, Final

from flask import Flask, current_app
from sqlalchemy import update
from sqlalchemy.orm import Session

from rankloop.core.contracts import RenderMessage, RoundStatus
from service.config import settings_of
from service.db import session_scope
from service.jobs import send_render
from service.models import Campaign, Round, utcnow
from service.render_messages import render_message
from service.render_queue import SLOT_FREED, Waiting, first_waiting
from service.render_slots import owner_slot_free, render_slot_free
from service.transitions import audit, compare_and_set, find_round

log = logging.getLogger(__name__)

RENDER_WAITING: Final = "round_render_waiting"  # the audit event of a render kept for a slot


def mark_enqueued(session: Session, campaign_id: str, round_number: int, job_id: str) -> None:
    """Note that the render job ``job_id`` left (the sweep re-sends one that never did)."""
    _mark_send(
        session, campaign_id, round_number, render_enqueued_at=utcnow(), render_task_id=job_id
    )


def mark_unsent(session: Session, campaign_id: str, round_number: int) -> None:
    """Note that a render's message did not leave: the sweep sends it again soon, not after
    ``render_timeout_s`` (a re-send stamps the round before it sends)."""
    _mark_send(session, campaign_id, round_number, render_enqueued_at=None)


def _mark_send(session: Session, campaign_id: str, round_number: int, **values: Any) -> None:
    session.execute(
        update(Round)
        .where(
            Round.campaign_id == campaign_id,
            Round.number == round_number,
            Round.status == RoundStatus.RENDERING,
        )
        .values(**values)
    )
    session.commit()


def _to_send(session: Session, message: RenderMessage, slots: int) -> RenderMessage | None:
    """What to send for ``message``: itself when a slot of its owner is free and no render of
    that owner waits ahead of it (:mod:`service.render_queue`); else it waits (unsent, audited
    ``RENDER_WAITING``) and, with a slot free, the first render waiting goes in its place.
    None: nothing to send now."""
    if slots <= 0:
        return message
    campaign = session.get(Campaign, message.campaign_id)
    if campaign is None:
        session.rollback()
        return message
    round_number = message.round_number
    free = render_slot_free(session, campaign, round_number, slots)
    round_ = find_round(session, campaign.id, round_number)
    waiting = round_ is not None and round_.render_enqueued_at is None
    head = first_waiting(session, campaign.owner_key_id) if free and waiting else None
    first = head is None or (head.campaign_id, head.round_number) == (campaign.id, round_number)
    if free and first:
        session.rollback()
        return message
    session.execute(
        update(Round)
        .where(Round.campaign_id == campaign.id, Round.number == message.round_number)
        .values(render_enqueued_at=None)
    )
    audit(session, RENDER_WAITING, campaign.id, message.round_number)
    instead = _take_slot(session, head) if head is not None else None
    session.commit()
    return instead


def _take_slot(session: Session, head: Waiting) -> RenderMessage | None:
    """Give the free slot to the waiting render ``head`` (stamped sent, in the caller's
    transaction, which holds its owner's slot lock)."""
    round_ = session.get(Round, head.round_id)
    campaign = session.get(Campaign, head.campaign_id)
    if round_ is None or campaign is None:
        return None
    # No job until its send goes through (mark_enqueued): a sender killed before that leaves
    # the round for the sweep to send (service.sweep.never_left).
    stamped = {"render_enqueued_at": utcnow(), "render_task_id": None}
    if not compare_and_set(session, round_, RoundStatus.RENDERING, **stamped):
        return None
    audit(session, "round_render_resent", campaign.id, round_.number, reason=SLOT_FREED)
    return render_message(campaign, round_)


def send_renders(renders: Iterable[RenderMessage], app: Flask | None = None) -> list[str]:
    """Send render messages whose rows are committed; the ids of the jobs sent. A send that
    fails is logged and left to the sweep. A render whose owner has every render slot busy
    (:func:`service.render_slots.render_slot_free`), or whose owner has renders waiting ahead
    of it (:mod:`service.render_queue`), waits: it goes out in its turn (:func:`send_waiting`,
    or the sweep)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    sent = []
    slots = settings_of(app).render_slots_per_owner
    for planned in renders:
        with session_scope(app) as session:
            message = _to_send(session, planned, slots)
        if message is None:
            continue
        job_id = f"render-{message.campaign_id}-{message.round_number:04d}-{uuid.uuid4().hex[:8]}"
        try:
            send_render(app, message, job_id)
        except Exception:  # the broker is down: the sweep re-sends
            log.exception("could not send render %s", job_id)
            with session_scope(app) as session:
                mark_unsent(session, message.campaign_id, message.round_number)
            continue
        with session_scope(app) as session:
            mark_enqueued(session, message.campaign_id, message.round_number, job_id)
        sent.append(job_id)
    return sent


def send_waiting(
    app: Flask | None = None, *, campaign_id: str | None = None, owner_key_id: int | None = None
) -> list[str]:
    """Give an owner's free render slots to their waiting renders now, in
    :mod:`service.render_queue`'s order: called after the commit that frees one (a round's
    render back or failed for good, a preview's slot released), so a waiting render goes out
    then, not at the next sweep. The owner: ``campaign_id``'s when given, else
    ``owner_key_id`` (None: the admin token). The ids of the jobs sent.

    The sweep stays the safety net: this is best effort, and what fails here (the database
    or the broker down) is logged and left to it, never failing the caller's own work."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    slots = settings_of(app).render_slots_per_owner
    if slots <= 0:
        return []  # no cap: no render waits for a slot
    try:
        with session_scope(app) as session:
            if campaign_id is not None:
                campaign = session.get(Campaign, campaign_id)
                if campaign is None:
                    return []
                owner_key_id = campaign.owner_key_id
            taken = _take_free_slots(session, owner_key_id, slots)
        return send_renders(taken, app)
    except Exception:
        log.exception("could not send the renders waiting for a slot (the sweep will)")
        return []


def _take_free_slots(session: Session, owner: int | None, slots: int) -> list[RenderMessage]:
    """Stamp the owner's first waiting renders sent, one per free slot, in one transaction
    (which holds the owner's slot lock: a request or a sweep checking the same slots waits for
    its commit); their messages, to send after it."""
    taken: list[RenderMessage] = []
    while len(taken) < slots and owner_slot_free(session, owner, slots):
        head = first_waiting(session, owner)
        message = _take_slot(session, head) if head is not None else None
        if message is None:
            break
        taken.append(message)
    session.commit()
    return taken


__all__ = ["RENDER_WAITING", "mark_enqueued", "mark_unsent", "send_renders", "send_waiting"]
