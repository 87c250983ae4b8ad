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

This is the annotator's hot path: Core statements on the tables (no ORM objects), as few round
trips as the database allows: on PostgreSQL outside a transaction, one statement for the
running lease and one that chooses the round and inserts the task, each on its own
(autocommit: none needs to see another's uncommitted write); elsewhere the same in one short
transaction, with the round chosen and the task inserted in two statements.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Integer, String, bindparam, func, literal, select, update
from sqlalchemy.orm import Session

from rankloop.core.contracts import MAX_LOAD_CREDIT_S, RoundStatus, TaskStatus
from rankloop.core.errors import Conflict, Forbidden, Gone, NotFound
from service import verdicts
from service.auth import unknown_token
from service.caches import CampaignView, RoundRef, campaign_view
from service.driver import (
    ANNOTATORS,
    CAMPAIGNS,
    RANKINGS,
    ROUNDS,
    TASKS,
    autocommit_on_postgres,
    insert_on_conflict,
    run_on_driver,
)
from service.models import Annotator, Assignment, Campaign, Round, new_short_id, utcnow
from service.statements import (
    LOCK_ROUND,
    lease_ends,
    lease_ends_sql,
    lease_lapsed,
    lease_room_sql,
    lease_running,
    lock_round,
    now_param,
    renew_lapsed_lease,
    round_leasable,
    study_round_eligible,
)

LAST_SEEN_EVERY = dt.timedelta(seconds=60)  # ``annotators.last_seen``: one write a minute at most
# Whose rounds an annotator is offered: its own campaign's, its study's, or (pool) every one.
Scope = Literal["campaign", "study", "pool"]
SCOPES: tuple[Scope, ...] = ("campaign", "study", "pool")


def _scope(campaign_id: str | None, study_id: str | None) -> Scope:
    return "campaign" if campaign_id is not None else "study" if study_id is not None else "pool"


def _scope_params(campaign_id: str | None, study_id: str | None) -> dict[str, Any]:
    if campaign_id is not None:
        return {"annotator_campaign_id": campaign_id}
    return {"annotator_study_id": study_id} if study_id is not None else {}


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


# -- the statements ------------------------------------------------------------------------------


def _current_lease_statement() -> Any:
    """The annotator (by token hash) and its running lease, if any, in one statement."""
    a, t, r, c = ANNOTATORS, TASKS, ROUNDS, CAMPAIGNS
    running = t.join(r, r.c.id == t.c.round_id).join(c, c.c.id == r.c.campaign_id)
    return (
        select(
            a.c.id,
            a.c.campaign_id,
            a.c.last_seen,
            t.c.id.label("task_id"),
            t.c.expires_at,
            r.c.id.label("round_id"),
            r.c.number,
            r.c.campaign_id.label("round_campaign_id"),
            a.c.study_id,
        )
        .select_from(
            a.outerjoin(
                running,
                (t.c.annotator_id == a.c.id)
                & lease_running(now_param())
                & round_leasable()
                & ((a.c.campaign_id.is_(None)) | (r.c.campaign_id == a.c.campaign_id)),
            )
        )
        .where(a.c.token_hash == bindparam("token_hash"))
        .order_by(t.c.created_at)
        .limit(1)
    )


def _round_to_lease(scope: Scope, *columns: Any) -> Any:
    """The open round that most needs this annotator's ranking (see the module's docstring)."""
    t, r, c, rk = TASKS, ROUNDS, CAMPAIGNS, RANKINGS
    now = now_param()
    annotator_id = bindparam("annotator_id", type_=String)
    leased = (
        select(t.c.round_id, func.count().label("leased"))
        .join(r, r.c.id == t.c.round_id)
        .where(r.c.status == RoundStatus.OPEN, lease_running(now))
        .group_by(t.c.round_id)
        .subquery()
    )
    need = lease_room_sql(r, c.c.settings) - r.c.n_rankings - func.coalesce(leased.c.leased, 0)
    # This annotator's task on the round, but a lapsed lease (that one is renewed instead).
    mine = select(t.c.id).where(
        t.c.round_id == r.c.id, t.c.annotator_id == annotator_id, ~lease_lapsed(now)
    )
    ranked_round = r.alias("ranked_round")
    done_here = (
        select(func.count())
        .select_from(rk.join(ranked_round, ranked_round.c.id == rk.c.round_id))
        .where(rk.c.annotator_id == annotator_id, ranked_round.c.campaign_id == r.c.campaign_id)
        .scalar_subquery()
    )
    # The verdict round: asked first of annotators who did not steer, and not counted against
    # the quota of steering work (service.verdicts).
    eligible = [round_leasable(), verdicts.open_to(annotator_id)]
    if scope == "campaign":
        eligible.append(r.c.campaign_id == bindparam("annotator_campaign_id"))
    elif scope == "study":
        eligible.extend(study_round_eligible(c))
    # A study's worker closes rounds first; elsewhere the largest shortfall goes first.
    first = need.asc() if scope == "study" else need.desc()
    return (
        select(*(columns or (r.c.id, r.c.number, r.c.campaign_id)))
        .select_from(r)
        .join(c, c.c.id == r.c.campaign_id)
        .outerjoin(leased, leased.c.round_id == r.c.id)
        .where(
            *eligible,
            need > 0,
            ~mine.exists(),
            (done_here < c.c.settings["tasks_per_annotator"].as_integer())
            | verdicts.is_verdict_sql(r),
        )
        .order_by(first, r.c.opened_at, r.c.id)
        .limit(1)
    )


def _lease_round_postgres(scope: Scope, skip_locked: bool = False) -> Any:
    """PostgreSQL: choose the round and insert the task in one statement; the task with its
    round, or no row (nothing to lease, or a parallel request leased that round first)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    t, r, c = TASKS, ROUNDS, CAMPAIGNS
    now = now_param()
    lease_s = c.c.settings["lease_s"].as_float()
    choice = _round_to_lease(
        scope,
        bindparam("task_id", type_=String),
        r.c.id,
        bindparam("annotator_id", type_=String),
        literal(TaskStatus.LEASED, String),
        now,
        lease_ends_sql(now, lease_s),
    )
    if skip_locked:
        choice = choice.with_for_update(of=r, skip_locked=True)
    inserted = (
        pg_insert(t)
        .from_select(
            ["id", "round_id", "annotator_id", "status", "created_at", "expires_at"], choice
        )
        .on_conflict_do_update(**_RENEW_EXPIRED_LEASE)
        .returning(t.c.id, t.c.expires_at, t.c.round_id)
        .cte("inserted")
    )
    return select(inserted.c.id, inserted.c.expires_at, r.c.id, r.c.number, r.c.campaign_id).join(
        r, r.c.id == inserted.c.round_id
    )


def _withdraw_over_quorum_statement() -> Any:
    """Expire the task just leased when the round now holds more running leases and rankings
    than its room (its quorum, plus one once its last slot was offered:
    :func:`~service.statements.lease_room`); returns its id when it did.

    Two requests that choose the same round at once each count the other's lease as not yet
    there (each statement sees what was committed when it began), so both insert and the round
    is over-leased. Each checks again after its insert is committed, under the round's lock
    (:data:`~service.statements.LOCK_ROUND`, taken by a statement of its own just before this
    one, in the same transaction: :func:`_withdrawn`). So the checks run one at a time, in the
    order they got the lock, and each reads the leases as the checks before it left them: a
    check steps back only while the round is over its room, and each step back leaves it at
    its room at least. Exactly the room's leases survive; the rest step back and look again.
    (Read within the statement that waited for the lock, the count would be as of before the
    wait: every racing lease could count the others that had already stepped back, and all
    step back, leaving the places free.)

    The rankings are read under the same lock: a late ranking on a lapsed lease's slot, decided
    under it (:func:`~service.statements.slot_taken_over`), either saw this lease (committed
    before the check) and was refused, or was stored first and is counted here, and this lease
    steps back. So a late ranking is never stored beside a new holder's."""
    t = TASKS
    # Not "round_id": a column of the table updated (its parameter would be read as its value).
    round_id, now = bindparam("lease_round_id", type_=Integer), now_param()
    rankings = lock_round(round_id).scalar_subquery()
    # The round's room (its quorum, one more once its last slot was offered) may only grow
    # while it is open: a stale read makes this lease step back, never stay over it.
    room = (
        select(lease_room_sql(ROUNDS, CAMPAIGNS.c.settings))
        .select_from(ROUNDS.join(CAMPAIGNS, CAMPAIGNS.c.id == ROUNDS.c.campaign_id))
        .where(ROUNDS.c.id == round_id)
        .scalar_subquery()
    )
    running = (
        select(func.count())
        .select_from(t)
        .where(t.c.round_id == round_id, lease_running(now))
        .scalar_subquery()
    )
    return (
        update(t)
        .where(t.c.id == bindparam("task_id"), t.c.status == TaskStatus.LEASED)
        .where(rankings + running > room)
        .values(expires_at=t.c.created_at)
        .returning(t.c.id)
    )


_CURRENT_LEASE = _current_lease_statement()
_WITHDRAW_OVER_QUORUM = _withdraw_over_quorum_statement()
_ROUND_TO_LEASE = {scope: _round_to_lease(scope) for scope in SCOPES}
_RENEW_EXPIRED_LEASE = renew_lapsed_lease()
_LEASE_ROUND_POSTGRES = {scope: _lease_round_postgres(scope) for scope in SCOPES}
_LEASE_STUDY_ROUND_UNLOCKED = _lease_round_postgres("study", skip_locked=True)
_TOUCH_ANNOTATOR = (
    update(ANNOTATORS)
    .where(ANNOTATORS.c.id == bindparam("annotator_id"))
    .values(last_seen=now_param())
)


# -- the two ways to run them ------------------------------------------------------------------


def _withdrawn(session: Session, task_id: str, round_id: int, now: dt.datetime) -> bool:
    """Whether the lease just made was withdrawn over the quorum (:data:`_WITHDRAW_OVER_QUORUM`):
    the round's lock, then the check, in one short transaction sent in one round trip."""
    params = {"task_id": task_id, "lease_round_id": round_id, "now": now}
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.pipeline(), driver.transaction():
        run_on_driver(session, LOCK_ROUND, round_id=round_id)
        withdrawn = run_on_driver(session, _WITHDRAW_OVER_QUORUM, **params)
    return withdrawn.fetchone() is not None


def _lease_postgres(session: Session, token_hash: str, now: dt.datetime) -> Lease | None:
    looked_again = False
    for _attempt in range(3):
        row = run_on_driver(session, _CURRENT_LEASE, token_hash=token_hash, now=now).fetchone()
        if row is None:
            raise unknown_token(session, token_hash)
        annotator_id, own_campaign_id, last_seen, task_id, expires_at = row[:5]
        if last_seen is None or now - last_seen > LAST_SEEN_EVERY:
            run_on_driver(session, _TOUCH_ANNOTATOR, annotator_id=annotator_id, now=now)
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
            **_scope_params(own_campaign_id, study_id),
        }
        scope = _scope(own_campaign_id, study_id)
        leased = None
        if scope == "study":
            # A study's workers all want the round closest to its quorum: one that another
            # request is leasing this instant is passed over for the next (SKIP LOCKED), else
            # most of them would lease the same round and step back (below). Only when every
            # round was passed over, or none is left, is the plain choice made.
            leased = run_on_driver(session, _LEASE_STUDY_ROUND_UNLOCKED, **params).fetchone()
        if leased is None:
            leased = run_on_driver(session, _LEASE_ROUND_POSTGRES[scope], **params).fetchone()
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
        row = session.execute(_CURRENT_LEASE, {"token_hash": token_hash, "now": now}).first()
        if row is None:
            session.rollback()
            raise unknown_token(session, token_hash)
        annotator_id, own_campaign_id, last_seen = row[0], row[1], row[2]
        if last_seen is None or now - last_seen > LAST_SEEN_EVERY:
            session.execute(_TOUCH_ANNOTATOR, {"annotator_id": annotator_id, "now": now})
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
            **_scope_params(own_campaign_id, row.study_id),
        }
        scope = _scope(own_campaign_id, row.study_id)
        target = session.execute(_ROUND_TO_LEASE[scope], params).first()
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
            .on_conflict_do_update(**_RENEW_EXPIRED_LEASE)
            .returning(TASKS.c.id)
        ).first()
        # Checked against the quorum under the round's lock, taken first and held to the
        # commit (a late ranking's decision takes it too: see _withdraw_over_quorum_statement).
        if inserted is not None:
            session.execute(LOCK_ROUND, {"round_id": round_.id})
        withdrawn = inserted is not None and (
            session.execute(
                _WITHDRAW_OVER_QUORUM,
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
