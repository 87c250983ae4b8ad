"""The rules of a task's life, each written once as SQLAlchemy Core, for every path that runs it.

Leasing (:mod:`service.leasing`) and submitting run on the annotator's hot path in several
shapes: ORM rows and checks (:mod:`service.submission`, the reference), Core statements in one
short transaction, and a single PostgreSQL statement (:mod:`service.fast_submission`). Each
shape is built from the predicates and statements here, so a rule (which lease is running,
when a lease ends, when a lapsed lease's slot was taken over, how a task is claimed, how a round counts a ranking, when its quorum is in,
how a ranking row is written) cannot differ between them. How the ranking credits its annotator
and when the completion code is theirs: :mod:`service.crediting`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    Integer,
    String,
    Update,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import FromClause

from rankloop.core.campaign_settings import (
    CampaignSettings,
    first_quorum,
)
from rankloop.core.contracts import (
    CAMPAIGN_ENDED,
    CampaignStatus,
    RoundStatus,
    TaskStatus,
)
from rankloop.core.errors import Conflict
from service.driver import ANNOTATORS, CAMPAIGNS, RANKINGS, ROUNDS, STUDIES, TASKS


def now_param() -> Any:
    """The statement's clock (``now``): one for every path, never the database's own."""
    return bindparam("now", type_=DateTime)


# -- leases ------------------------------------------------------------------------------------


def round_leasable(rounds: FromClause = ROUNDS, campaigns: FromClause = CAMPAIGNS) -> Any:
    """A round annotators are given tasks on (joined with its campaign): open, and its campaign
    running (a paused campaign's open round waits)."""
    return (rounds.c.status == RoundStatus.OPEN) & (campaigns.c.status == CampaignStatus.RUNNING)


def study_round_eligible(campaigns: FromClause = CAMPAIGNS) -> list[ColumnElement[bool]]:
    """A round a study's worker (the parameters ``annotator_id``, ``annotator_study_id``) may be
    given, beside :func:`round_leasable`: one of their study's campaigns, while they are under
    the study's quota (``tasks_per_worker``; the completion code is theirs from there)."""
    a = ANNOTATORS
    under_quota = (
        select(a.c.id)
        .join(STUDIES, STUDIES.c.id == a.c.study_id)
        .where(a.c.id == bindparam("annotator_id"), a.c.tasks_done < STUDIES.c.tasks_per_worker)
        .exists()
    )
    return [campaigns.c.study_id == bindparam("annotator_study_id", type_=String), under_quota]


def lease_running(now: Any, tasks: FromClause = TASKS) -> ColumnElement[bool]:
    """A task whose lease runs at ``now``: leased, ending after it, and not withdrawn over the
    quorum (:mod:`service.leasing`: its end set to its start). Withdrawn is said apart from the
    clock: racing requests' ``now`` differ, and one whose ``now`` is earlier than a withdrawn
    lease's start would count it as running (and step back from it)."""
    return (
        (tasks.c.status == TaskStatus.LEASED)
        & (tasks.c.expires_at > now)
        & (tasks.c.expires_at > tasks.c.created_at)
    )


def lease_lapsed(at: Any, tasks: FromClause = TASKS) -> ColumnElement[bool]:
    """A task whose lease ran out unused by ``at``: still leased, ended at or before it (or
    withdrawn: see :func:`lease_running`)."""
    return (tasks.c.status == TaskStatus.LEASED) & (
        (tasks.c.expires_at <= at) | (tasks.c.expires_at <= tasks.c.created_at)
    )


def lease_ends(start: dt.datetime, lease_s: float) -> dt.datetime:
    """When a lease of ``lease_s`` seconds from ``start`` ends."""
    return start + dt.timedelta(seconds=float(lease_s))


def lease_ends_sql(start: Any, lease_s: Any) -> Any:
    """:func:`lease_ends` inside a PostgreSQL statement, for a lease whose campaign (and so
    ``lease_s``) the statement itself chooses."""
    return start + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)


def renew_lapsed_lease() -> dict[str, Any]:
    """``ON CONFLICT`` arguments of a new task's insert (one task per round and annotator) that
    renew this annotator's own lapsed lease on the round, same task id, and leave any other row
    alone (``excluded`` compiles the same on SQLite)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    excluded = pg_insert(TASKS).excluded
    return {
        "index_elements": ["round_id", "annotator_id"],
        # A renewed lease starts afresh: the page reports its images' loading time again.
        "set_": {
            "created_at": excluded.created_at,
            "expires_at": excluded.expires_at,
            "shown_at": None,
        },
        "where": lease_lapsed(excluded.created_at),
    }


def lock_round(round_id: Any = None) -> Any:
    """Lock a round's row (``round_id``, a parameter of that name unless given) until the transaction ends, and read its
    ``n_rankings`` as last committed (PostgreSQL reads a locked row's newest version, even
    inside a statement that began before the lock was granted; SQLite has one writer at a
    time). Every decision that a lapsed lease's slot is free or taken is made under this lock:
    the late ranking's (:func:`slot_taken_over`), and a new lease's check against the quorum
    (:mod:`service.leasing`), whose tasks are committed before they take it."""
    return (
        select(ROUNDS.c.n_rankings)
        .where(
            ROUNDS.c.id
            == (round_id if round_id is not None else bindparam("round_id", type_=Integer))
        )
        .with_for_update()
    )


LOCK_ROUND = lock_round()
OTHERS_RUNNING = (
    select(func.count())
    .select_from(TASKS)
    .where(
        TASKS.c.round_id == bindparam("round_id", type_=Integer),
        TASKS.c.id != bindparam("task_id", type_=String),
        lease_running(now_param()),
    )
)


def slot_taken_over(
    session: Session, settings: CampaignSettings, round_id: int, task_id: str, now: dt.datetime
) -> bool:
    """Whether the slot of ``task_id``, whose lease lapsed, went to someone else: the round's
    rankings and the other running leases already make its quorum. Decided under the round's
    lock (:func:`lock_round`, held until the caller's transaction ends): the rankings are read
    locked, the leases after the lock was granted, so a lease given or a ranking stored at the
    same moment is seen, or sees this ranking (a new lease then steps back): the late ranking is
    stored (marked ``late``) only while the round still needs it, never beside the new
    holder's."""
    n_rankings = session.execute(LOCK_ROUND, {"round_id": round_id}).scalar_one()
    others = session.execute(
        OTHERS_RUNNING, {"round_id": round_id, "task_id": task_id, "now": now}
    ).scalar_one()
    quorum, straggler_at = session.execute(
        select(ROUNDS.c.quorum, ROUNDS.c.straggler_at).where(ROUNDS.c.id == round_id)
    ).one()
    return n_rankings + others >= lease_room(settings, quorum, straggler_at)


# -- a round's quorum ---------------------------------------------------------------------------


def round_quorum(settings: CampaignSettings, quorum: int | None) -> int:
    """The rankings a round waits for now: its own ``quorum`` (an adaptive quorum's, raised
    while its decision is unsettled: :mod:`service.closing`), else the campaign's
    ``annotators_per_round``. A new round's is
    :func:`~rankloop.core.campaign_settings.first_quorum`."""
    return settings.annotators_per_round if quorum is None else quorum


def initial_quorum(settings: CampaignSettings) -> int | None:
    """A new round's ``quorum`` column: an adaptive quorum's minimum; NULL for a fixed quorum
    (the campaign's ``annotators_per_round``, as every round before the column had)."""
    return first_quorum(settings) if settings.quorum == "adaptive" else None


def quorum_reached(settings: CampaignSettings, n_rankings: int, quorum: int | None = None) -> bool:
    """Whether ``n_rankings`` rankings are a round's quorum (:func:`round_quorum`; the
    round's own ``quorum`` column, NULL for a fixed quorum)."""
    return n_rankings >= round_quorum(settings, quorum)


def lease_room(settings: CampaignSettings, quorum: int | None, straggler_at: Any) -> int:
    """The rankings and running leases a round may hold at once: its quorum, and one more once
    its last slot was offered to another annotator (``straggler_at``: the straggler keeps its
    lease, the first of the two rankings fills the slot). Never more than one more."""
    return round_quorum(settings, quorum) + (straggler_at is not None)


def round_quorum_sql(rounds: FromClause = ROUNDS, settings: Any = CAMPAIGNS.c.settings) -> Any:
    """:func:`round_quorum` inside a statement joined with the round and its campaign."""
    return func.coalesce(rounds.c.quorum, quorum_sql(settings))


def lease_room_sql(rounds: FromClause = ROUNDS, settings: Any = CAMPAIGNS.c.settings) -> Any:
    """:func:`lease_room` inside a statement joined with the round and its campaign."""
    offered = case((rounds.c.straggler_at.is_not(None), 1), else_=0)
    return round_quorum_sql(rounds, settings) + offered


def round_quorum_met(
    n_rankings: Any, rounds: FromClause = ROUNDS, settings: Any = CAMPAIGNS.c.settings
) -> ColumnElement[bool]:
    """:func:`quorum_reached` inside a statement joined with the round and its campaign."""
    return n_rankings >= round_quorum_sql(rounds, settings)


def quorum_sql(settings: Any = CAMPAIGNS.c.settings) -> Any:
    """A campaign's quorum inside a statement, read from its ``settings`` JSON column."""
    return settings["annotators_per_round"].as_integer()


def quorum_met(n_rankings: Any, settings: Any = CAMPAIGNS.c.settings) -> ColumnElement[bool]:
    """:func:`quorum_reached` inside a statement: ``n_rankings`` (an expression) reach the quorum
    of the campaign whose ``settings`` column the statement joins."""
    return n_rankings >= quorum_sql(settings)


# -- a ranking stored ----------------------------------------------------------------------------


def takes_rankings(status: Any) -> bool:
    """Whether a campaign of this status stores a ranking: not once it ended (stopped, finished,
    failed). A lease given before the owner stopped it is refused (409), so no ranking made
    after the stop enters a consensus or the data; a paused campaign's leases still count."""
    return status not in CAMPAIGN_ENDED


def takes_rankings_sql(campaigns: FromClause = CAMPAIGNS) -> ColumnElement[bool]:
    """:func:`takes_rankings` inside a statement joined with the campaign."""
    # Not NOT IN: an expanding parameter does not compile for the hot path's driver statement.
    return and_(*(campaigns.c.status != status for status in CAMPAIGN_ENDED))


def campaign_ended(status: Any) -> Conflict:
    """The refusal of a ranking for a campaign that no longer :func:`takes_rankings`."""
    return Conflict(f"the campaign is {status}: it takes no more rankings")


def claim_task(*where: Any) -> Update:
    """Mark the task submitted: only a leased one, so a task is submitted once."""
    return (
        update(TASKS)
        .where(TASKS.c.status == TaskStatus.LEASED, *where)
        .values(status=TaskStatus.SUBMITTED)
    )


def count_ranking(*where: Any) -> Update:
    """Count a ranking on its round: only while the round is open (a closed round's rankings
    are final, its consensus made from them) and its campaign :func:`takes_rankings`."""
    return (
        update(ROUNDS)
        .where(
            ROUNDS.c.status == RoundStatus.OPEN,
            ROUNDS.c.campaign_id.in_(select(CAMPAIGNS.c.id).where(takes_rankings_sql())),
            *where,
        )
        .values(n_rankings=ROUNDS.c.n_rankings + 1, last_ranking_at=now_param())
    )


def ranking_row(task_id: Any, round_id: Any, annotator_id: Any, late: Any) -> dict[str, Any]:
    """A ranking row's columns: the task's (values or a claimed task's columns), then the order
    and its checks from the parameters ``order``, ``positions``, ``passed`` and ``now``."""
    return {
        "assignment_id": task_id,
        "round_id": round_id,
        "annotator_id": annotator_id,
        "order": bindparam("order", type_=JSON),
        "positions": bindparam("positions", type_=JSON),
        # Cast: a NULL (no attention check) selected into INSERT ... SELECT is typed text.
        "attention_passed": cast(bindparam("passed", type_=Boolean), Boolean),
        "late": late,
        "created_at": now_param(),
    }


# The statements on one row, as the reference path and the hot path's steps run them.
COUNT_RANKING = count_ranking(ROUNDS.c.id == bindparam("round_id")).returning(
    ROUNDS.c.campaign_id, ROUNDS.c.number, ROUNDS.c.n_rankings, ROUNDS.c.quorum
)
INSERT_RANKING = (
    insert(RANKINGS)
    .values(
        ranking_row(
            bindparam("task_id", type_=String),
            bindparam("round_id", type_=Integer),
            bindparam("annotator_id", type_=String),
            bindparam("late", type_=Boolean),
        )
    )
    .returning(RANKINGS.c.id)
)


__all__ = [
    "COUNT_RANKING",
    "INSERT_RANKING",
    "LOCK_ROUND",
    "OTHERS_RUNNING",
    "campaign_ended",
    "claim_task",
    "count_ranking",
    "initial_quorum",
    "lease_ends",
    "lease_ends_sql",
    "lease_lapsed",
    "lease_room",
    "lease_room_sql",
    "lease_running",
    "lock_round",
    "now_param",
    "quorum_met",
    "quorum_reached",
    "quorum_sql",
    "ranking_row",
    "renew_lapsed_lease",
    "round_leasable",
    "round_quorum",
    "round_quorum_met",
    "round_quorum_sql",
    "slot_taken_over",
    "study_round_eligible",
    "takes_rankings",
    "takes_rankings_sql",
]
