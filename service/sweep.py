"""The sweep (``rankloop.coord.sweep``, run by beat): what no request is left to do. A round
past its deadline is closed when its quorum is in (:func:`service.closing.close_if_ready`), else
extended, never guessed; a round whose quorum is in but whose close was lost is closed; a round
waiting on a straggler has its last slot offered to one more annotator (:mod:`service.stragglers`); and a
render that never left, never came back, or whose worker stopped beating
(:func:`heartbeat_stale`) is sent again, as is one that no worker holds and the broker lost
(:func:`lost_by_broker`: a Redis restart without persistence empties its queue).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Collection

from flask import current_app, has_app_context
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rankloop.core.contracts import CAMPAIGN_LIVE, RoundStatus
from rankloop.core.settings import Settings
from service.closing import close_if_ready, count_rankings, open_round, record_failure
from service.config import app_settings
from service.driver import CAMPAIGNS, ROUNDS
from service.jobs import render_jobs_held
from service.models import AuditEvent, Campaign, Round, utcnow
from service.render_heartbeats import drop_heartbeat, render_heartbeat
from service.render_messages import render_message
from service.render_queue import SLOT_FREED, waiting_in_turn
from service.render_sending import RENDER_WAITING
from service.render_slots import render_slot_free
from service.rendering import Outcome
from service.statements import round_leasable, round_quorum, round_quorum_met
from service.stragglers import offer_last_slot, straggling_rounds
from service.transitions import audit, compare_and_set

log = logging.getLogger(__name__)

# Why a render was sent again (the audit event's ``reason``; rankloop_renders_resent_total).
UNSENT, STALE, TIMEOUT, NOT_QUEUED = "unsent", "heartbeat_stale", "timeout", "not_queued"
LOST_BY_BROKER = "render message lost: not on the broker's queue and no worker holds it"


def _extend(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """Give an open round short of its quorum another deadline."""
    found = open_round(session, round_id)
    if found is None:
        return Outcome()
    round_, campaign = found
    seconds = campaign.config.round_deadline_s
    outcome = Outcome()
    if compare_and_set(
        session,
        round_,
        RoundStatus.OPEN,
        deadline=now + dt.timedelta(seconds=seconds),
        extensions=round_.extensions + 1,
    ):
        audit(
            session,
            "round_extended",
            campaign.id,
            round_.number,
            n_rankings=count_rankings(session, round_id),
            quorum=round_quorum(campaign.config, round_.quorum),
        )
        outcome.events.append("extended")
    session.commit()
    return outcome


def _due(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """A round past its deadline: closed when its quorum is in, else extended."""
    closed = close_if_ready(session, round_id, now, deadline=True)
    return closed if closed.events else _extend(session, round_id, now)


def _offer(session: Session, round_id: int, now: dt.datetime) -> Outcome:
    """A round waiting on a straggler: its last slot offered to one more annotator, once."""
    return Outcome(events=["straggler_offered"] if offer_last_slot(session, round_id, now) else [])


def _resend(
    session: Session,
    round_id: int,
    now: dt.datetime,
    lost: Collection[int] = (),
    full: set[int | None] | None = None,
) -> Outcome:
    """A render that never left, whose worker stopped beating (:func:`heartbeat_stale`), that
    the broker lost (its round in ``lost``, :func:`lost_by_broker`), or that never came back
    within ``render_timeout_s``: sent again (the render job is idempotent, and a second result
    for the same round is refused by :func:`service.rendering.round_rendered`). ``full``: the
    owners found with every render slot busy in this sweep (their later waiting renders, behind
    in :mod:`service.render_queue`'s order, are not looked at again)."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != RoundStatus.RENDERING:
        session.rollback()
        return Outcome()
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    if round_.render_enqueued_at is None and (
        (full is not None and campaign.owner_key_id in full)
        or not render_slot_free(session, campaign, round_.number)
    ):
        session.rollback()  # waiting for one of its owner's render slots: a later sweep sends it
        if full is not None:
            full.add(campaign.owner_key_id)
        return Outcome()
    timeout = dt.timedelta(seconds=campaign.config.render_timeout_s)
    stale = stale_after()
    unsent_since = never_left(round_)
    sent = round_.render_enqueued_at
    if unsent_since is not None:  # due render_lost_after_s on: its sender may be sending it now
        sent = unsent_since - timeout + lost_after()
    assert sent is not None
    reason: str | None = None
    if sent + timeout <= now and unsent_since is None:
        reason = TIMEOUT
    elif (
        unsent_since is not None
        and sent + timeout <= now
        and render_heartbeat(campaign.id, round_.number) is None  # (else it left: it renders)
    ):
        reason = UNSENT
    elif round_.render_enqueued_at is None and _waited_for_slot(session, round_):
        # Held back by its owner's render cap, and a slot is free now: sent at once, not
        # render_lost_after_s after its round was made (that wait is for a sender that died).
        reason = SLOT_FREED
    elif sent + stale <= now and heartbeat_stale(campaign.id, round_.number, now):
        reason = STALE
    elif round_id in lost and render_heartbeat(campaign.id, round_.number) is None:
        reason = NOT_QUEUED  # (the heartbeat read again: a worker that took it since beats)
    outcome = Outcome()
    if reason and compare_and_set(
        session, round_, RoundStatus.RENDERING, render_enqueued_at=now, render_task_id=None
    ):
        details = {"error": LOST_BY_BROKER} if reason == NOT_QUEUED else {}
        if reason == NOT_QUEUED:
            log.warning(
                "round %s of %s: %s, sent again", round_.number, campaign.id, LOST_BY_BROKER
            )
        audit(session, "round_render_resent", campaign.id, round_.number, reason=reason, **details)
        outcome.renders.append(render_message(campaign, round_))
        session.commit()
        # The next beat is the new render's own: until then it waits for render_timeout_s
        # (a render queued behind others is not sent again and again).
        drop_heartbeat(campaign.id, round_.number)
        return outcome
    if round_.render_enqueued_at is not None and sent + stale <= now:
        _check_pickup(session, round_)
    session.commit()
    return outcome


def never_left(round_: Round) -> dt.datetime | None:
    """Since when a rendering round's render has been unsent, or None when its message left.
    A render leaves after the commit that makes (or stamps) its round, and only a send that
    went through records its job (``render_task_id``, :func:`service.render_sending.mark_enqueued`);
    a sender that dies in between (a web process killed after the close that made the round)
    leaves it unsent, as a broker down at the send does. The sweep sends it
    ``render_lost_after_s`` after this, on any broker (it waited 30 s, and every annotator of its
    campaign with it; one stamped for a send, render_timeout_s)."""
    if round_.render_enqueued_at is None:
        return round_.created_at  # never sent, or sent back to wait for a render slot
    if round_.render_task_id is None:
        return round_.render_enqueued_at  # stamped for a send that never recorded its job
    return None


def _waited_for_slot(session: Session, round_: Round) -> bool:
    """Whether the round's render was kept waiting for a render slot
    (:func:`service.render_sending.send_renders` audits it, ``RENDER_WAITING``)."""
    waited = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.campaign_id == round_.campaign_id,
        AuditEvent.round_number == round_.number,
        AuditEvent.kind == RENDER_WAITING,
    )  # fmt: skip
    return bool(session.scalar(waited))


PICKUP_FAILED = "render_pickup_failed"  # shown as the round's problem (service.api.events)


def _check_pickup(session: Session, round_: Round) -> None:
    """A render sent a while ago that no worker has started: when the render workers that beat
    all listen on another route (a broker configuration mismatch), say so on the round, once."""
    from service.health import render_workers

    if render_heartbeat(round_.campaign_id, round_.number) is not None:
        return
    mismatch = render_workers().mismatch
    if mismatch is None:
        return
    seen = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.campaign_id == round_.campaign_id,
        AuditEvent.round_number == round_.number,
        AuditEvent.kind == PICKUP_FAILED,
    )  # fmt: skip
    if not session.scalar(seen):
        log.error("round %s of %s: %s", round_.number, round_.campaign_id, mismatch)
        audit(session, PICKUP_FAILED, round_.campaign_id, round_.number, error=mismatch)


def lost_by_broker(session: Session, now: dt.datetime) -> set[int]:
    """The rendering rounds whose render was sent ``render_lost_after_s`` ago or more, that no
    worker beats for, and whose message the broker no longer holds (``jobs.render_jobs_held``:
    not queued, not unacknowledged). A render waiting in a long queue is held, so it is never
    sent twice; where the broker cannot say (RabbitMQ, whose queues survive its restarts, or a
    broker down) nothing is: ``render_timeout_s`` covers it. One broker read per sweep, only
    when such a round exists."""
    if not has_app_context():
        return set()
    since = now - lost_after()
    r, c = ROUNDS, CAMPAIGNS
    rows = session.execute(
        select(r.c.id, r.c.campaign_id, r.c.number, r.c.render_task_id)
        .join(c, c.c.id == r.c.campaign_id)
        .where(
            r.c.status == RoundStatus.RENDERING,
            c.c.status.in_(CAMPAIGN_LIVE),
            r.c.render_enqueued_at <= since,
            r.c.render_task_id.is_not(None),
        )
    ).all()
    session.rollback()
    quiet = {row.render_task_id: row.id for row in rows
             if render_heartbeat(row.campaign_id, row.number) is None}  # fmt: skip
    if not quiet:
        return set()
    held = render_jobs_held(current_app._get_current_object(), quiet)  # type: ignore[attr-defined]
    if held is None:
        return set()
    return {round_id for job_id, round_id in quiet.items() if job_id not in held}


def lost_after() -> dt.timedelta:
    """How long a render may stay unsent, or sent but neither held by the broker nor beaten for,
    before the sweep sends it again (the setting ``render_lost_after_s``; its default outside
    an app)."""
    if has_app_context():
        return dt.timedelta(seconds=app_settings().render_lost_after_s)
    return dt.timedelta(seconds=Settings.model_fields["render_lost_after_s"].default)


def stale_after() -> dt.timedelta:
    """How old a render's heartbeat may get before its worker is taken for gone (the setting
    ``render_stale_after_s``; its default outside an app)."""
    if has_app_context():
        return dt.timedelta(seconds=app_settings().render_stale_after_s)
    return dt.timedelta(seconds=Settings.model_fields["render_stale_after_s"].default)


def heartbeat_stale(campaign_id: str, round_number: int, now: dt.datetime) -> bool:
    """Whether the round's render heartbeat exists and is older than :func:`stale_after`: its
    worker died mid-render, or finished and its result was lost. No heartbeat (the render is
    still queued, or the store cannot say) is not stale: ``render_timeout_s`` covers it."""
    beat = render_heartbeat(campaign_id, round_number)
    if beat is None:
        return False
    try:
        at = float(beat["at"])
    except (ValueError, KeyError, TypeError):
        return True  # a damaged heartbeat beats no more
    return now.replace(tzinfo=dt.UTC).timestamp() - at >= stale_after().total_seconds()


def sweep(session: Session, now: dt.datetime | None = None) -> Outcome:
    """Deadlines, lost closes and lost renders, one round at a time, each in its own
    transaction. A round whose step fails is logged and recorded in the audit log
    (``sweep_failed``), and the sweep goes on with the others; the next sweep tries that round
    again."""
    now = now or utcnow()
    r, c = ROUNDS, CAMPAIGNS
    open_rounds = select(r.c.id).join(c, c.c.id == r.c.campaign_id).where(round_leasable())
    due = session.scalars(open_rounds.where(r.c.deadline <= now)).all()
    # Quorum in but still open: the close (inline, after the last ranking's commit) died with
    # its web process. Closed now, not at the deadline (an image set's items have none).
    full = session.scalars(
        open_rounds.where(
            (r.c.deadline > now) | r.c.deadline.is_(None),
            round_quorum_met(r.c.n_rankings, r, c.c.settings),
        )
    ).all()
    rendering = session.scalars(
        select(r.c.id)
        .join(c, c.c.id == r.c.campaign_id)
        .where(
            r.c.status == RoundStatus.RENDERING,
            c.c.status.in_(CAMPAIGN_LIVE),
            r.c.render_enqueued_at.is_not(None),
        )
        .order_by(r.c.id)
    ).all()
    # Renders waiting for a slot, in the order they get one (service/render_queue.py).
    waiting = [w.round_id for w in waiting_in_turn(session)]
    session.rollback()
    try:
        lost = lost_by_broker(session, now)
    except Exception:  # the store or the database failed: the other checks still run
        session.rollback()
        log.exception("the check for renders lost by the broker failed")
        lost = set()
    resend = functools.partial(_resend, lost=lost)
    send_waiting = functools.partial(_resend, full=set())
    outcome = Outcome()
    stragglers = straggling_rounds(session, now)
    session.rollback()
    for step, round_ids in (
        (_due, due),
        (close_if_ready, full),
        (_offer, stragglers),
        (resend, rendering),
        (send_waiting, waiting),
    ):
        for round_id in round_ids:
            try:
                done = step(session, round_id, now)
            except Exception as error:
                session.rollback()
                record_failure(session, round_id, error)
                continue
            outcome.renders += done.renders
            outcome.events += done.events
    return outcome


__all__ = [
    "LOST_BY_BROKER",
    "NOT_QUEUED",
    "PICKUP_FAILED",
    "SLOT_FREED",
    "STALE",
    "TIMEOUT",
    "UNSENT",
    "heartbeat_stale",
    "lost_after",
    "lost_by_broker",
    "stale_after",
    "sweep",
]
