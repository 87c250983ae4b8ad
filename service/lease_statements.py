"""The statements that lease a task (:mod:`service.leasing` runs them), each built once, at
import: the annotator's running lease, the round that most needs its ranking (for each scope of
rounds an annotator may be offered), the task inserted on PostgreSQL in the same statement, and
the check, under the round's lock, that withdraws a lease over the round's room.

Built from the rules of a task's life (:mod:`service.statements`), so leasing's two ways to run
them (one statement each on PostgreSQL, short transactions elsewhere) share every rule.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Integer, String, bindparam, func, literal, select, update

from rankloop.core.contracts import RoundStatus, TaskStatus
from service import verdicts
from service.driver import ANNOTATORS, CAMPAIGNS, RANKINGS, ROUNDS, TASKS
from service.statements import (
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

# Whose rounds an annotator is offered: its own campaign's, its study's, or (pool) every one.
Scope = Literal["campaign", "study", "pool"]
SCOPES: tuple[Scope, ...] = ("campaign", "study", "pool")


def scope_of(campaign_id: str | None, study_id: str | None) -> Scope:
    return "campaign" if campaign_id is not None else "study" if study_id is not None else "pool"


def scope_params(campaign_id: str | None, study_id: str | None) -> dict[str, Any]:
    if campaign_id is not None:
        return {"annotator_campaign_id": campaign_id}
    return {"annotator_study_id": study_id} if study_id is not None else {}


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
        .on_conflict_do_update(**RENEW_EXPIRED_LEASE)
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
    one, in the same transaction: ``service.leasing._withdrawn``). So the checks run one at a time, in the
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


CURRENT_LEASE = _current_lease_statement()
WITHDRAW_OVER_QUORUM = _withdraw_over_quorum_statement()
ROUND_TO_LEASE = {scope: _round_to_lease(scope) for scope in SCOPES}
RENEW_EXPIRED_LEASE = renew_lapsed_lease()
LEASE_ROUND_POSTGRES = {scope: _lease_round_postgres(scope) for scope in SCOPES}
LEASE_STUDY_ROUND_UNLOCKED = _lease_round_postgres("study", skip_locked=True)
TOUCH_ANNOTATOR = (
    update(ANNOTATORS)
    .where(ANNOTATORS.c.id == bindparam("annotator_id"))
    .values(last_seen=now_param())
)


__all__ = [
    "CURRENT_LEASE",
    "LEASE_ROUND_POSTGRES",
    "LEASE_STUDY_ROUND_UNLOCKED",
    "RENEW_EXPIRED_LEASE",
    "ROUND_TO_LEASE",
    "SCOPES",
    "TOUCH_ANNOTATOR",
    "WITHDRAW_OVER_QUORUM",
    "Scope",
    "scope_of",
    "scope_params",
]
