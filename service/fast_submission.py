"""A ranking stored on the annotator's hot path (``POST /api/tasks/<task_id>/ranking``).

The same writes as :func:`service.submission.submit` (the reference path), in as few round trips
as the database allows, with the annotator found by its token hash inside the statement that
claims its task. Only the common case runs here: a running lease of this annotator on an open
round. Anything else (an unknown token, a foreign, repeated or late task, a closed round, a bad
order) writes nothing here and goes to :func:`~service.submission.submit`, which finds out why,
so every answer is the one the reference path gives (a repeat of the same order included: it is
answered with the stored ranking, see :func:`~service.submission.repeated`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, bindparam, select, text, update
from sqlalchemy.orm import Session

from rankloop.core.errors import InvalidInput, Unauthorized
from service.caches import RoundRef, campaign_view, round_images
from service.driver import ANNOTATORS, ROUNDS, TASKS, autocommit_on_postgres, run_on_driver
from service.models import Annotator, utcnow
from service.ranking_rules import attention_passed, parse_order
from service.submission import (
    COUNT_RANKING,
    CREDIT_ANNOTATOR,
    INSERT_RANKING,
    Submitted,
    credit,
    quorum_reached,
    submit,
)


def submit_by_token(
    session: Session,
    token_hash: str,
    task_id: str,
    order: list[Any],
    now: dt.datetime | None = None,
) -> Submitted:
    """:func:`~service.submission.submit` for the annotator with this token hash: one
    statement on PostgreSQL outside a transaction, else one short transaction."""
    now = now or utcnow()
    if autocommit_on_postgres(session):
        return _submit_postgres(session, token_hash, task_id, order, now)
    return _submit_in_steps(session, token_hash, task_id, order, now)


def _reference_path(
    session: Session, token_hash: str, task_id: str, order: list[Any], now: dt.datetime
) -> Submitted:
    session.rollback()
    annotator = session.scalar(select(Annotator).where(Annotator.token_hash == token_hash))
    if annotator is None:
        raise Unauthorized("unknown annotator token: open the task link you were given again")
    return submit(session, annotator, task_id, order, now)


# -- one short transaction -------------------------------------------------------------------------

# Claims a running lease of this annotator (and, on PostgreSQL, locks it).
_CLAIM = (
    update(TASKS)
    .where(
        TASKS.c.id == bindparam("task_id"),
        TASKS.c.status == "leased",
        TASKS.c.expires_at > bindparam("now", type_=DateTime),
        TASKS.c.annotator_id
        == select(ANNOTATORS.c.id)
        .where(ANNOTATORS.c.token_hash == bindparam("token_hash"))
        .scalar_subquery(),
    )
    .values(status="submitted")
    .returning(TASKS.c.round_id, TASKS.c.annotator_id)
)


def _submit_in_steps(
    session: Session, token_hash: str, task_id: str, order: list[Any], now: dt.datetime
) -> Submitted:
    """Claim the task, count the ranking on its round (only while the round is open; locks the
    round row), store it, credit the annotator; commit."""
    claimed = session.execute(
        _CLAIM, {"task_id": task_id, "token_hash": token_hash, "now": now}
    ).first()
    counted = None
    if claimed is not None:
        counted = session.execute(COUNT_RANKING, {"round_id": claimed.round_id, "now": now}).first()
    if claimed is None or counted is None:
        return _reference_path(session, token_hash, task_id, order, now)
    round_ = RoundRef(claimed.round_id, counted.campaign_id, counted.number)
    campaign = campaign_view(session, round_.campaign_id)
    settings = campaign.config
    images = round_images(session, round_)
    try:
        positions = parse_order(order, images, settings.k, settings.allow_ties)
    except InvalidInput:
        session.rollback()
        raise
    passed = attention_passed(positions, images)
    ranking_id = session.execute(
        INSERT_RANKING,
        {
            "task_id": task_id,
            "round_id": round_.id,
            "annotator_id": claimed.annotator_id,
            "order": list(order),
            "positions": positions,
            "passed": passed,
            "late": False,
            "now": now,
        },
    ).scalar_one()
    session.execute(
        CREDIT_ANNOTATOR,
        {
            "annotator_id": claimed.annotator_id,
            "now": now,
            **credit(settings, campaign.completion_code, passed),
        },
    )
    session.commit()
    return Submitted(
        ranking_id, round_.id, False, passed, quorum_reached(settings, counted.n_rankings)
    )


# -- PostgreSQL: one statement -------------------------------------------------------------------

_TASK_OF_TOKEN = (
    select(ANNOTATORS.c.id, TASKS.c.round_id, ROUNDS.c.campaign_id, ROUNDS.c.number)
    .select_from(
        ANNOTATORS.outerjoin(
            TASKS,
            (TASKS.c.id == bindparam("task_id")) & (TASKS.c.annotator_id == ANNOTATORS.c.id),
        ).outerjoin(ROUNDS, ROUNDS.c.id == TASKS.c.round_id)
    )
    .where(ANNOTATORS.c.token_hash == bindparam("token_hash"))
)

# Everything a stored ranking changes, in one statement (so, on its own, one transaction): the
# writes of service.submission (_CLAIM, COUNT_RANKING, CREDIT_ANNOTATOR, INSERT_RANKING) in SQL.
# `target` locks the task and its round and re-checks both after any wait (READ COMMITTED
# re-evaluates a locked row's conditions on its newest version): a parallel submission of the
# same task, or a round closed meanwhile, leaves it empty, and then nothing is written.
_SUBMIT_POSTGRES = text("""
WITH target AS (
    SELECT assignments.id, assignments.round_id, assignments.annotator_id
    FROM assignments JOIN rounds ON rounds.id = assignments.round_id
    WHERE assignments.id = :task_id AND assignments.annotator_id = :annotator_id
      AND assignments.status = 'leased' AND assignments.expires_at > :now
      AND rounds.status = 'open'
    FOR UPDATE OF assignments, rounds
), claimed AS (
    UPDATE assignments SET status = 'submitted'
    WHERE id IN (SELECT id FROM target) RETURNING id
), counted AS (
    UPDATE rounds SET n_rankings = n_rankings + 1, last_ranking_at = :now
    WHERE id IN (SELECT round_id FROM target) RETURNING n_rankings
), credited AS (
    UPDATE annotators SET
        tasks_done = tasks_done + 1,
        last_seen = :now,
        attention_failed = attention_failed + :failed,
        completion_code = CASE WHEN completion_code IS NULL AND tasks_done + 1 >= :quota
                               THEN CAST(:code AS VARCHAR) ELSE completion_code END
    WHERE id IN (SELECT annotator_id FROM target) RETURNING id
), stored AS (
    INSERT INTO rankings (assignment_id, round_id, annotator_id, "order", positions,
                          attention_passed, late, created_at)
    SELECT id, round_id, annotator_id, CAST(:order AS JSON), CAST(:positions AS JSON),
           CAST(:passed AS BOOLEAN), false, :now
    FROM target
    RETURNING id
)
SELECT stored.id, counted.n_rankings FROM stored, counted, claimed, credited
""").bindparams(
    bindparam("now", type_=DateTime),
    bindparam("failed", type_=Integer),
    bindparam("quota", type_=Integer),
    bindparam("order", type_=JSON),
    bindparam("positions", type_=JSON),
)


def _submit_postgres(
    session: Session, token_hash: str, task_id: str, order: list[Any], now: dt.datetime
) -> Submitted:
    """Two statements, each its own transaction: the annotator with the task's round (read
    only), then :data:`_SUBMIT_POSTGRES`."""
    from psycopg.types.json import Json  # (PostgreSQL's driver: imported only when used)

    task = run_on_driver(session, _TASK_OF_TOKEN, task_id=task_id, token_hash=token_hash).fetchone()
    if task is None or task[1] is None:
        return _reference_path(session, token_hash, task_id, order, now)
    annotator_id, round_id, campaign_id, number = task
    round_ = RoundRef(round_id, campaign_id, number)
    campaign = campaign_view(session, round_.campaign_id)
    settings = campaign.config
    images = round_images(session, round_)
    try:
        positions = parse_order(order, images, settings.k, settings.allow_ties)
    except InvalidInput:  # a repeated or late task is told so first, as it always was
        return _reference_path(session, token_hash, task_id, order, now)
    passed = attention_passed(positions, images)
    stored = run_on_driver(
        session,
        _SUBMIT_POSTGRES,
        task_id=task_id,
        annotator_id=annotator_id,
        now=now,
        order=Json(list(order)),
        positions=Json(positions),
        passed=passed,
        **credit(settings, campaign.completion_code, passed),
    ).fetchone()
    if stored is None:
        return _reference_path(session, token_hash, task_id, order, now)
    ranking_id, n_rankings = stored
    return Submitted(ranking_id, round_.id, False, passed, quorum_reached(settings, n_rankings))


__all__ = ["submit_by_token"]
