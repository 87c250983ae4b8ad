"""The render hand-off: a new round row and its render message, the render's result (the
round opens) or its final failure, and the sending of render messages.

A step (see :mod:`service`) returns the render messages it made in an :class:`Outcome`;
:func:`run_step` commits the step and only then sends them, so a message never announces a row
that does not exist yet. A send that fails leaves the round ``rendering`` with no
``render_enqueued_at``, and the sweep (:func:`service.sweep.sweep`) sends it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from flask import Flask, current_app, has_app_context
from sqlalchemy import and_, func, not_, select, true, update
from sqlalchemy.orm import Session

from rankloop.core.contracts import (
    CAMPAIGN_LIVE,
    CampaignStatus,
    ConsensusFeed,
    ImageRole,
    RenderMessage,
    RenderResult,
    RenderSettings,
    RoundStatus,
    heartbeat_key,
    parse,
    render_error_is_permanent,
)
from rankloop.core.errors import InvalidInput
from rankloop.core.settings import load_settings
from rankloop.core.storage import round_prefix
from service.config import app_settings, settings_of
from service.db import session_scope
from service.jobs import send_render
from service.models import AuditEvent, Campaign, Image, Round, utcnow
from service.render_queue import SLOT_FREED, Waiting, first_waiting
from service.statements import initial_quorum
from service.transitions import audit, compare_and_set, find_round, get_campaign, is_postgres

log = logging.getLogger(__name__)

# The stored settings JSON's key of the image salt (RenderSettings.image_salt and
# CampaignSettings.image_salt; tests/test_campaign_settings.py checks): the salt is written into
# that JSON, and kept out of the JSON an export shows, which keeps keys the model does not know.
IMAGE_SALT: Final = "image_salt"


@dataclass
class Outcome:
    """What a step did: the render messages to send after its commit, and what happened."""

    renders: list[RenderMessage] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    campaign_id: str | None = None  # the campaign a step created (a fork), if any


def render_settings(campaign: Campaign) -> RenderSettings:
    """The campaign settings a render worker gets (the rest stays with the coordinator), from
    the typed settings (``campaign.config``: an older row's missing keys have their defaults).
    A render value the stored row holds beyond a bound (kept by ``CampaignSettings.from_stored``)
    is refused here, naming the field, as the worker would refuse it."""
    data = campaign.config.model_dump(include=set(RenderSettings.model_fields))
    data["prompt"] = campaign.prompt
    return parse(RenderSettings, data, "campaign settings")


def render_message(campaign: Campaign, round_: Round) -> RenderMessage:
    """The message that renders ``round_`` (again, after a loss: it is built from the row)."""
    return RenderMessage(
        campaign_id=campaign.id,
        round_number=round_.number,
        settings=render_settings(campaign),
        previous_state_key=round_.previous_state_key,
        consensus=None
        if round_.consensus_in is None
        else ConsensusFeed.model_validate(round_.consensus_in),
    )


def new_round(
    session: Session,
    campaign: Campaign,
    number: int,
    previous: Round | None,
    consensus: ConsensusFeed | None,
) -> RenderMessage:
    """Add round ``number`` (rendering) to the step's transaction; its render message."""
    if not campaign.config.image_salt:
        # The campaign's secret for image names, made with its first round (and for campaigns
        # older than it, with their next one); a new dict, so the JSON column sees the change.
        campaign.settings = {**campaign.settings, IMAGE_SALT: secrets.token_hex(16)}
    round_ = Round(
        campaign_id=campaign.id,
        number=number,
        status=RoundStatus.RENDERING,
        previous_state_key=previous.state_key if previous else None,
        consensus_in=None if consensus is None else consensus.model_dump(),
        quorum=initial_quorum(campaign.config),
    )
    session.add(round_)
    audit(session, "round_render_requested", campaign.id, number)
    return render_message(campaign, round_)


def round_rendered(
    session: Session, result: dict[str, Any], now: dt.datetime | None = None
) -> bool:
    """Record a render result and open the round. A duplicate result changes nothing."""
    now = now or utcnow()
    rendered = parse(RenderResult, result, "render result")
    if not rendered.images:
        raise InvalidInput(f"render result for round {rendered.round_number} holds no images")
    campaign = get_campaign(session, rendered.campaign_id, lock=True)
    round_ = find_round(session, rendered.campaign_id, rendered.round_number)
    if round_ is None or round_.status != RoundStatus.RENDERING:
        session.rollback()
        return False
    # Positions: the candidates in index order, then the attention image.
    images = sorted(rendered.images, key=lambda i: (i.role != ImageRole.CANDIDATE, i.index))
    deadline = now + dt.timedelta(seconds=campaign.config.round_deadline_s)
    best = rendered.best
    won = compare_and_set(
        session,
        round_,
        RoundStatus.RENDERING,
        status=RoundStatus.OPEN,
        kind=rendered.kind,
        state_key=rendered.state_key,
        manifest_key=rendered.manifest_key,
        best_key=best.key if best else None,
        best_thumb_key=best.thumb_key if best else None,
        render_seconds=rendered.render_seconds,
        stats=rendered.stats,
        opened_at=now,
        deadline=deadline,
    )
    if not won:
        session.rollback()
        return False
    for position, image in enumerate(images):
        session.add(
            Image(
                round_id=round_.id,
                position=position,
                index=image.index,
                role=image.role,
                key=image.key,
                thumb_key=image.thumb_key,
            )
        )
    audit(
        session,
        "round_opened",
        campaign.id,
        round_.number,
        n_images=len(images),
        kind=rendered.kind,
        render_seconds=rendered.render_seconds,
    )
    session.commit()
    return True


def round_failed(
    session: Session,
    campaign_id: str,
    round_number: int,
    error: str,
    now: dt.datetime | None = None,
) -> bool:
    """A render failed after the worker's retries. A permanent error
    (``contracts.render_error_is_permanent``: bad settings, unknown model, damaged object) fails
    the round and its campaign visibly (the owner may resume it). Any other (the store or the
    broker down, an error of unknown class) leaves the round ``rendering``, audited as
    ``round_render_error``, and the sweep sends it again (:func:`service.sweep.sweep`): an
    outage pauses a campaign, never ends it. True when the round changed."""
    campaign = get_campaign(session, campaign_id, lock=True)
    round_ = find_round(session, campaign_id, round_number)
    if round_ is None or round_.status != RoundStatus.RENDERING:
        session.rollback()
        return False
    if not render_error_is_permanent(error):
        if not compare_and_set(
            session, round_, RoundStatus.RENDERING, render_enqueued_at=now or utcnow()
        ):
            session.rollback()
            return False
        audit(session, "round_render_error", campaign_id, round_number, error=error)
        session.commit()
        return True
    if not compare_and_set(
        session, round_, RoundStatus.RENDERING, status=RoundStatus.FAILED, error=error
    ):
        session.rollback()
        return False
    if campaign.status in CAMPAIGN_LIVE:
        campaign.status = CampaignStatus.FAILED
    campaign.error = f"round {round_number}: {error}"
    audit(session, "round_failed", campaign_id, round_number, error=error)
    session.commit()
    return True


def render_heartbeat(campaign_id: str, round_number: int) -> dict[str, Any] | None:
    """The round's render heartbeat (``contracts.heartbeat_key``: ``at``, ``worker``, and
    ``error`` when the render failed for good), or None when there is none or the store cannot
    say."""
    data = _store_call("get", heartbeat_key(campaign_id, round_number))
    if data is None:
        return None
    try:
        beat = json.loads(data)
    except ValueError:
        return {}  # a damaged heartbeat beats no more
    return beat if isinstance(beat, dict) else {}


def drop_heartbeat(campaign_id: str, round_number: int) -> None:
    _store_call("delete", heartbeat_key(campaign_id, round_number))


def _store_call(method: str, key: str) -> Any:
    """``store.<method>(key)`` on the coordinator's store; None when it fails or is absent."""
    if not has_app_context():
        return None
    store = current_app.extensions.get("rankloop_store")
    if store is None:
        return None
    try:
        if method == "get" and not store.exists(key):
            return None
        return getattr(store, method)(key)
    except Exception as error:  # the store is down: the caller falls back (render_timeout_s)
        log.warning("store %s %s failed: %s", method, key, error)
        return None


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


def owner_actor(owner_key_id: int | None) -> str:
    """The audit log's actor of an owner key (None: the admin token)."""
    return "admin" if owner_key_id is None else f"owner-key:{owner_key_id}"


def _slots(slots: int | None) -> int:
    if slots is None:
        # Outside an app (a script's session), this process's settings: the cap holds there too.
        slots = (app_settings() if has_app_context() else load_settings()).render_slots_per_owner
    return slots


def render_slot_free(
    session: Session, campaign: Campaign, round_number: int, slots: int | None = None
) -> bool:
    """Whether the campaign's owner has fewer than ``slots`` (``RENDER_SLOTS_PER_OWNER``)
    renders in flight (rounds sent and not yet back, and previews: :func:`previews_in_flight`)
    besides round ``round_number``: renders are scheduled fairly across owners by this cap, and
    within an owner in :mod:`service.render_queue`'s order."""
    slots = _slots(slots)
    if slots <= 0:
        return True
    return _in_flight(session, campaign.owner_key_id, slots, (campaign.id, round_number)) < slots


def preview_slot_free(session: Session, owner_key_id: int | None, slots: int | None = None) -> bool:
    """Whether the owner may send one more preview render: the same cap as their rounds'
    (:func:`render_slot_free`), counting both. The caller records the preview it sends
    (:func:`preview_sent`) in the same transaction, which holds the owner's lock."""
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


# A preview (service/api/previews.py) names no campaign: its render is in the audit log, as
# PREVIEW_SENT by its owner (campaign_id: the preview's render id), until its image or its
# failure is in the store (PREVIEW_DONE), and holds one of its owner's render slots meanwhile.
# A preview is never sent again, so one lost with its worker stops counting after
# PREVIEW_HOLD_S.
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
    if _store_call("exists", f"{round_prefix(render_id, 0)}/manifest.json"):
        return True
    beat = render_heartbeat(render_id, 0)
    return bool(beat and beat.get("error"))


RENDER_WAITING = "round_render_waiting"  # the audit event of a render kept for a render slot


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
    if not compare_and_set(session, round_, RoundStatus.RENDERING, render_enqueued_at=utcnow()):
        return None
    audit(session, "round_render_resent", campaign.id, round_.number, reason=SLOT_FREED)
    return render_message(campaign, round_)


def send_renders(renders: Iterable[RenderMessage], app: Flask | None = None) -> list[str]:
    """Send render messages whose rows are committed; the ids of the jobs sent. A send that
    fails is logged and left to the sweep. A render whose owner has every render slot busy
    (:func:`render_slot_free`), or whose owner has renders waiting ahead of it
    (:mod:`service.render_queue`), waits: the sweep sends it in its turn."""
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


def run_step(
    step: Callable[..., Outcome],
    *args: Any,
    session: Session | None = None,
    app: Flask | None = None,
) -> Outcome:
    """``step(session, *args)``, which commits, then its render messages sent: the one way a
    step runs, from the API, the bookkeeping jobs and ``rankloop up``. ``session``: the
    request's; by default one of its own."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    if session is None:
        with session_scope(app) as own:
            outcome = step(own, *args)
    else:
        outcome = step(session, *args)
    send_renders(outcome.renders, app)
    return outcome


__all__ = [
    "PREVIEW_DONE",
    "PREVIEW_HOLD_S",
    "PREVIEW_SENT",
    "RENDER_WAITING",
    "Outcome",
    "drop_heartbeat",
    "mark_enqueued",
    "mark_unsent",
    "new_round",
    "owner_actor",
    "preview_done",
    "preview_sent",
    "preview_slot_free",
    "previews_in_flight",
    "render_heartbeat",
    "render_message",
    "render_settings",
    "render_slot_free",
    "round_failed",
    "round_rendered",
    "run_step",
    "send_renders",
]
