"""The next task for an annotator (``GET /api/tasks/next``).

An annotator keeps its running lease; else it gets a new task on the round that most needs a
ranking (largest quorum shortfall, then oldest) among the campaigns it may work on (its own;
every running one for a pool annotator) and has not met its quota of rankings in
(``tasks_per_annotator``). A study's worker is offered the rounds of its study's campaigns
only, while under the study's quota, the round closest to its quorum first (then the oldest):
that closes rounds, so renders start, while the study's other campaigns keep the worker busy.
A round it ranked, or holds a running lease on, is not offered again; one whose lease ran out
unused is, with the same task renewed (else a small team's round could never reach its
quorum).

This is the annotator's hot path: Core statements on the tables (no ORM objects; built once in
:mod:`service.lease_statements`), as few round trips as the database allows: on PostgreSQL
outside a transaction, one statement for the running lease and one that chooses the round and
inserts the task, each on its own
(autocommit: none needs to see another's uncommitted write); elsewhere the same in one short
transaction, with the round chosen and the task inserted in two statements.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.contracts import MAX_LOAD_CREDIT_S, TaskStatus
from rankloop.core.errors import Conflict, Forbidden, Gone, NotFound
from service import verdicts
from service.auth import unknown_token
from service.caches import CampaignView, RoundRef, campaign_view
from service.driver import TASKS, autocommit_on_postgres, insert_on_conflict, run_on_driver
from service.lease_statements import (
    CURRENT_LEASE,
    LEASE_ROUND_POSTGRES,
    LEASE_STUDY_ROUND_UNLOCKED,
    RENEW_EXPIRED_LEASE,
    ROUND_TO_LEASE,
    TOUCH_ANNOTATOR,
    WITHDRAW_OVER_QUORUM,
    scope_of,
    scope_params,
)
from service.models import Annotator, Assignment, Campaign, Round, new_short_id, utcnow
from service.statements import LOCK_ROUND, lease_ends, lease_running

LAST_SEEN_EVERY = dt.timedelta(seconds=60)  # ``annotators.last_seen``: one write a minute at most


@dataclass(frozen=True)
class Lease:
    """An annotator's running lease on a task, as ``GET /api/tasks/next`` shows it."""

    annotator_id: str
    task_id: str
    expires_at: dt.datetime
    round: RoundRef
    campaign: CampaignView


def lease(
    session: Session, annotator: Annotator, now: dt.datetime | None = None
) -> tuple[Assignment, Round, Campaign] | None:
    """:func:`lease_by_token` with the rows (the task, its round, its campaign), for callers
    that want them."""
    found = lease_by_token(session, annotator.token_hash, now)
    if found is None:
        return None
    task = session.get(Assignment, found.task_id, populate_existing=True)  # may be renewed
    round_ = session.get(Round, found.round.id)
    campaign = session.get(Campaign, found.round.campaign_id)
    assert task is not None and round_ is not None and campaign is not None
    return task, round_, campaign


def lease_by_token(
    session: Session, token_hash: str, now: dt.datetime | None = None
) -> Lease | None:
    """The running lease of the annotator with this token hash, else a new one (see the
    module's docstring), else None. The new task is inserted with ``ON CONFLICT DO UPDATE``
    on (round, annotator): that renews this annotator's own lapsed lease on the round (same
    task id, so a page still showing it may submit) and leaves a running one alone (a parallel
    request of the same annotator leased the round first; then that lease is served).
    Raises Unauthorized for an unknown token."""
    now = now or utcnow()
    if autocommit_on_postgres(session):
        return _lease_postgres(session, token_hash, now)
    return _lease_in_steps(session, token_hash, now)


# -- the two ways to run them ------------------------------------------------------------------


def _withdrawn(session: Session, task_id: str, round_id: int, now: dt.datetime) -> bool:
    """Whether the lease just made was withdrawn over the quorum (:data:`WITHDRAW_OVER_QUORUM`):
    the round's lock, then the check, in one short transaction sent in one round trip."""
    params = {"task_id": task_id, "lease_round_id": round_id, "now": now}
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.pipeline(), driver.transaction():
        run_on_driver(session, LOCK_ROUND, round_id=round_id)
        withdrawn = run_on_driver(session, WITHDRAW_OVER_QUORUM, **params)
    return withdrawn.fetchone() is not None


def _lease_postgres(session: Session, token_hash: str, now: dt.datetime) -> Lease | None:
    looked_again = False
    for _attempt in range(3):
        row = run_on_driver(session, CURRENT_LEASE, token_hash=token_hash, now=now).fetchone()
        if row is None:
            raise unknown_token(session, token_hash)
        annotator_id, own_campaign_id, last_seen, task_id, expires_at = row[:5]
        if last_seen is None or now - last_seen > LAST_SEEN_EVERY:
            run_on_driver(session, TOUCH_ANNOTATOR, annotator_id=annotator_id, now=now)
        if task_id is not None:
            round_ = RoundRef(row[5], row[7], row[6])
            campaign = campaign_view(session, round_.campaign_id)
            # A lease whose request died between its insert and its quorum check below (a web
            # process killed there) is checked when its annotator asks again: else it would
            # stay, and rank, beyond the quorum.
            if not _withdrawn(session, task_id, round_.id, now):
                return Lease(annotator_id, task_id, expires_at, round_, campaign)
            continue  # over the quorum: look for another round
        if looked_again:
            return None
        study_id = row[8]
        params: dict[str, Any] = {
            "now": now,
            "recent": verdicts.recent(now),
            "annotator_id": annotator_id,
            "task_id": new_short_id(),
            **scope_params(own_campaign_id, study_id),
        }
        scope = scope_of(own_campaign_id, study_id)
        leased = None
        if scope == "study":
            # A study's workers all want the round closest to its quorum: one that another
            # request is leasing this instant is passed over for the next (SKIP LOCKED), else
            # most of them would lease the same round and step back (below). Only when every
            # round was passed over, or none is left, is the plain choice made.
            leased = run_on_driver(session, LEASE_STUDY_ROUND_UNLOCKED, **params).fetchone()
        if leased is None:
            leased = run_on_driver(session, LEASE_ROUND_POSTGRES[scope], **params).fetchone()
        if leased is not None:
            task_id, expires_at, round_id, number, campaign_id = leased
            campaign = campaign_view(session, campaign_id)
            if not _withdrawn(session, task_id, round_id, now):
                round_ = RoundRef(round_id, campaign_id, number)
                return Lease(annotator_id, task_id, expires_at, round_, campaign)
            continue  # another annotator took the round's last place at the same instant
        # Nothing to lease, or a parallel request of this annotator leased that round between
        # the two statements: look for its lease once more before answering "nothing".
        looked_again = True
    raise Conflict("could not lease a task for a busy annotator; fetch the next task again")


def _lease_in_steps(session: Session, token_hash: str, now: dt.datetime) -> Lease | None:
    looked_again = False
    for _attempt in range(3):
        row = session.execute(CURRENT_LEASE, {"token_hash": token_hash, "now": now}).first()
        if row is None:
            session.rollback()
            raise unknown_token(session, token_hash)
        annotator_id, own_campaign_id, last_seen = row[0], row[1], row[2]
        if last_seen is None or now - last_seen > LAST_SEEN_EVERY:
            session.execute(TOUCH_ANNOTATOR, {"annotator_id": annotator_id, "now": now})
        if row.task_id is not None:
            session.commit()
            round_ = RoundRef(row.round_id, row.round_campaign_id, row.number)
            campaign = campaign_view(session, round_.campaign_id)
            return Lease(annotator_id, row.task_id, row.expires_at, round_, campaign)
        if looked_again:
            session.commit()
            return None
        params: dict[str, Any] = {
            "now": now,
            "recent": verdicts.recent(now),
            "annotator_id": annotator_id,
            **scope_params(own_campaign_id, row.study_id),
        }
        scope = scope_of(own_campaign_id, row.study_id)
        target = session.execute(ROUND_TO_LEASE[scope], params).first()
        if target is None:
            session.commit()
            looked_again = True  # (see _lease_postgres)
            continue
        round_ = RoundRef(target.id, target.campaign_id, target.number)
        campaign = campaign_view(session, round_.campaign_id)
        expires_at = lease_ends(now, campaign.config.lease_s)
        inserted = session.execute(
            insert_on_conflict(session, TASKS)
            .values(
                id=new_short_id(),
                round_id=round_.id,
                annotator_id=annotator_id,
                status=TaskStatus.LEASED,
                created_at=now,
                expires_at=expires_at,
            )
            .on_conflict_do_update(**RENEW_EXPIRED_LEASE)
            .returning(TASKS.c.id)
        ).first()
        # Checked against the quorum under the round's lock, taken first and held to the
        # commit (a late ranking's decision takes it too: see
        # service.lease_statements.WITHDRAW_OVER_QUORUM).
        if inserted is not None:
            session.execute(LOCK_ROUND, {"round_id": round_.id})
        withdrawn = inserted is not None and (
            session.execute(
                WITHDRAW_OVER_QUORUM,
                {
                    "task_id": inserted.id,
                    "lease_round_id": round_.id,
                    "now": now,
                },
            ).first()
            is not None
        )
        session.commit()
        if withdrawn:
            continue  # the round filled meanwhile: look for another one
        if inserted is not None:  # a new task, or this annotator's lapsed lease renewed
            return Lease(annotator_id, inserted.id, expires_at, round_, campaign)
        # The same annotator leased this round in a parallel request: serve that lease.
    raise Conflict("could not lease a task for a busy annotator; fetch the next task again")


# -- the images' loading time ----------------------------------------------------------------


def credit_loading(
    session: Session, token_hash: str, task_id: str, load_s: float, now: dt.datetime | None = None
) -> dt.datetime:
    """Extend the running lease on ``task_id`` by the time its images took to appear on the
    annotator's screen (the clock started when the task was handed out: on a slow phone
    connection that was many seconds of blank page). Once per lease, and never by more than
    the lease has run (the images cannot have loaded for longer) or
    :data:`~rankloop.core.contracts.MAX_LOAD_CREDIT_S`. A second report changes nothing.
    Returns the lease's end."""
    now = now or utcnow()
    annotator_id = session.scalar(select(Annotator.id).where(Annotator.token_hash == token_hash))
    if annotator_id is None:
        raise unknown_token(session, token_hash)
    found = session.execute(
        select(Assignment, lease_running(now).label("running"))
        .where(Assignment.id == task_id)
        .with_for_update(of=Assignment)
        .execution_options(populate_existing=True)
    ).first()
    if found is None:
        raise NotFound(f"no task {task_id!r}")
    task, running = found
    if task.annotator_id != annotator_id:
        raise Forbidden("this task was given to another annotator")
    if not running:
        raise Gone("this task's lease is over: fetch the next task")
    if task.shown_at is None:
        elapsed = max(0.0, (now - task.created_at).total_seconds())
        credit = min(load_s, elapsed, MAX_LOAD_CREDIT_S)
        task.expires_at += dt.timedelta(seconds=credit)
        task.shown_at = now
    expires_at = task.expires_at
    session.commit()
    return expires_at


__all__ = ["LAST_SEEN_EVERY", "Lease", "credit_loading", "lease", "lease_by_token"]
