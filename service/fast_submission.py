"""A ranking stored on the annotator's hot path (``POST /api/tasks/<task_id>/ranking``).

The same writes as :func:`service.submission.submit` (the reference path), in as few round trips
as the database allows, with the annotator found by its token hash inside the statement that
claims its task. Only the common case runs here: a running lease of this annotator on an open
round of a campaign that takes rankings. Anything else (an unknown token, a foreign, repeated or
late task, a closed round, an ended campaign, a bad order) writes nothing here and goes to :func:`~service.submission.submit`, which finds out why,
so every answer is the one the reference path gives (a repeat of the same order included: it is
answered with the stored ranking, see :func:`~service.submission.repeated`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, false, insert, select, true
from sqlalchemy.orm import Session

from rankloop.core.contracts import RoundStatus
from rankloop.core.errors import InvalidInput
from service.auth import unknown_token
from service.caches import RoundRef, campaign_view, round_images
from service.crediting import CREDIT_ANNOTATOR, credit, credit_annotator
from service.driver import (
    ANNOTATORS,
    CAMPAIGNS,
    RANKINGS,
    ROUNDS,
    TASKS,
    autocommit_on_postgres,
    run_on_driver,
)
from service.models import Annotator, utcnow
from service.ranking_rules import attention_passed, parse_order
from service.statements import (
    COUNT_RANKING,
    INSERT_RANKING,
    claim_task,
    count_ranking,
    lease_running,
    now_param,
    quorum_reached,
    ranking_row,
    takes_rankings_sql,
)
from service.submission import Submitted, submit


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
        raise unknown_token(session, token_hash)
    return submit(session, annotator, task_id, order, now)


# -- one short transaction -------------------------------------------------------------------------

# Claims a running lease of this annotator (and, on PostgreSQL, locks it).
_CLAIM = claim_task(
    TASKS.c.id == bindparam("task_id"),
    lease_running(now_param()),
    TASKS.c.annotator_id
    == select(ANNOTATORS.c.id)
    .where(ANNOTATORS.c.token_hash == bindparam("token_hash"))
    .scalar_subquery(),
).returning(TASKS.c.round_id, TASKS.c.annotator_id)


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
    return Submitted(ranking_id, round_.id, False, passed, quorum_reached(settings, *counted[2:4]))


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


def _submit_postgres_statement() -> Any:
    """Everything a stored ranking changes, in one statement (so, on its own, one transaction):
    the writes of the steps above, as data-modifying CTEs built from the same statements.
    ``target`` locks the task and its round and re-checks both after any wait (READ COMMITTED
    re-evaluates a locked row's conditions on its newest version): a parallel submission of the
    same task, or a round closed meanwhile, leaves it empty, and then nothing is written."""
    t, r, c = TASKS, ROUNDS, CAMPAIGNS
    target = (
        select(t.c.id, t.c.round_id, t.c.annotator_id)
        .join(r, r.c.id == t.c.round_id)
        .join(c, c.c.id == r.c.campaign_id)
        .where(
            t.c.id == bindparam("task_id"),
            t.c.annotator_id == bindparam("annotator_id"),
            lease_running(now_param()),
            r.c.status == RoundStatus.OPEN,
            takes_rankings_sql(c),
        )
        .with_for_update(of=[t, r])
        .cte("target")
    )
    claimed = claim_task(t.c.id.in_(select(target.c.id))).returning(t.c.id).cte("claimed")
    counted = (
        count_ranking(r.c.id.in_(select(target.c.round_id)))
        .returning(r.c.n_rankings, r.c.quorum)
        .cte("counted")
    )
    credited = (
        credit_annotator(ANNOTATORS.c.id.in_(select(target.c.annotator_id)))
        .returning(ANNOTATORS.c.id)
        .cte("credited")
    )
    row = ranking_row(target.c.id, target.c.round_id, target.c.annotator_id, false())
    stored = (
        insert(RANKINGS)
        .from_select(list(row), select(*row.values()))
        .returning(RANKINGS.c.id)
        .cte("stored")
    )
    # Joined, not just selected: a CTE that wrote nothing empties the answer.
    return select(stored.c.id, counted.c.n_rankings, counted.c.quorum).select_from(
        stored.join(counted, true()).join(claimed, true()).join(credited, true())
    )


_SUBMIT_POSTGRES = _submit_postgres_statement()


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
    ranking_id, n_rankings, quorum = stored
    return Submitted(
        ranking_id, round_.id, False, passed, quorum_reached(settings, n_rankings, quorum)
    )


__all__ = ["submit_by_token"]
