"""A ranking stored: the reference path, every check spelt out on ORM rows.

What a stored ranking changes, in one transaction: the task is marked submitted, the ranking
row is inserted, the round counts it (only while it is open), and the annotator is credited
(tasks done, attention checks failed, and the campaign's completion code once the quota is
met). Those writes are built from :mod:`service.statements`, as the hot path's are
(:mod:`service.fast_submission`, its single PostgreSQL statement included);
``tests/test_service_submission_paths.py`` runs both paths side by side.

Answers: 404 an unknown task, 403 another annotator's, 409 already submitted with another
order or the campaign ended (stopped: a ranking made after the stop is kept out of the data and
every consensus), 410 the round is no longer open or the lease ran out and the task went to someone else.
A ranking for a round that closed without waiting for it (a straggler's:
:mod:`service.stragglers`) is stored late and credited, never refused. A late ranking whose round still needs it (nobody else holds or filled its slot) is stored
(``late``); that is decided under the round's lock (:func:`~service.statements.slot_taken_over`),
as a new lease's check against the quorum is, so a late ranking is never stored beside the
ranking of whoever took its slot over. The same order sent again for
the same task by its annotator (a retry whose first answer was lost) is answered as the first
time, with the stored ranking's id, and changes nothing: submissions are idempotent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rankloop.core.contracts import CloseReason, RoundStatus, TaskStatus
from rankloop.core.errors import Conflict, Forbidden, Gone, NotFound
from service.caches import round_images
from service.crediting import CREDIT_ANNOTATOR, credit
from service.driver import RANKINGS, TASKS
from service.models import Annotator, Assignment, Campaign, Round, utcnow
from service.ranking_rules import attention_passed, parse_order
from service.statements import (
    COUNT_RANKING,
    INSERT_RANKING,
    campaign_ended,
    claim_task,
    quorum_reached,
    slot_taken_over,
    takes_rankings,
)
from service.transitions import rowcount


@dataclass(frozen=True)
class Submitted:
    """A stored ranking, and whether it completed its round's quorum."""

    ranking_id: int
    round_id: int
    late: bool
    attention_passed: bool | None
    quorum_reached: bool


def already_submitted() -> Conflict:
    return Conflict("this task already has your ranking; fetch the next task")


def repeated(session: Session, task_id: str, order: list[Any]) -> Submitted:
    """The stored ranking of ``task_id`` when it holds ``order`` (a retry), else Conflict."""
    session.rollback()
    stored = session.execute(
        select(RANKINGS.c.id, RANKINGS.c.round_id, RANKINGS.c.order, RANKINGS.c.late)
        .add_columns(RANKINGS.c.attention_passed)
        .where(RANKINGS.c.assignment_id == task_id)
    ).first()
    session.rollback()
    if stored is None or stored.order != list(order):
        raise already_submitted()
    # quorum_reached is False: the first answer already set off whatever the quorum sets off.
    return Submitted(stored.id, stored.round_id, stored.late, stored.attention_passed, False)


# -- the reference path --------------------------------------------------------------------------


def submit(
    session: Session,
    annotator: Annotator,
    task_id: str,
    order: list[Any],
    now: dt.datetime | None = None,
) -> Submitted:
    """Commit one ranking, or raise (see the module's docstring)."""
    now = now or utcnow()
    row = session.execute(
        select(Assignment, Round, Campaign)
        .join(Round, Round.id == Assignment.round_id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Assignment.id == task_id)
        .execution_options(populate_existing=True)  # as they are now, not as last loaded
    ).first()
    if row is None:
        raise NotFound(f"no task {task_id!r}")
    task, round_, campaign = row
    settings = campaign.config
    if task.annotator_id != annotator.id:
        raise Forbidden("this task was given to another annotator")
    if task.status == TaskStatus.SUBMITTED:
        return repeated(session, task_id, order)
    if not takes_rankings(campaign.status):
        raise campaign_ended(campaign.status)
    if round_.status != RoundStatus.OPEN:
        if straggler_kept(round_):
            return _keep_late(session, annotator, task, round_, campaign, order, now)
        raise Gone(f"round {round_.number} is {round_.status}: fetch the next task")
    late = task.expires_at <= now
    if late and slot_taken_over(session, settings, round_.id, task.id, now):
        session.rollback()  # (the round's lock)
        raise Gone("your lease expired and the task went to someone else")
    images = round_images(session, round_)
    positions = parse_order(order, images, settings.k, settings.allow_ties)
    passed = attention_passed(positions, images)
    claimed = session.execute(claim_task(TASKS.c.id == task.id))
    if rowcount(claimed) != 1:  # submitted in parallel
        return repeated(session, task_id, order)
    counted = session.execute(COUNT_RANKING, {"round_id": round_.id, "now": now}).first()
    if counted is None:  # closed, or its campaign stopped, since they were read above
        session.rollback()
        status = session.scalar(select(Campaign.status).where(Campaign.id == campaign.id))
        if not takes_rankings(status):
            raise campaign_ended(status)
        session.refresh(round_)
        if straggler_kept(round_):  # closed by the other of the last slot's two meanwhile
            return _keep_late(session, annotator, task, round_, campaign, order, now)
        raise Gone(f"round {round_.number} closed: fetch the next task")
    try:
        ranking_id = _store_and_credit(
            session, task, annotator, campaign, order, positions, passed, late, now
        )
    except IntegrityError:
        return repeated(session, task_id, order)
    return Submitted(
        ranking_id,
        round_.id,
        late,
        passed,
        quorum_reached(settings, counted.n_rankings, counted.quorum),
    )


def straggler_kept(round_: Round) -> bool:
    """Whether a ranking for a task still leased on this closed round is kept: the round
    closed because its last slot was offered to one more annotator and the other ranked first
    (:mod:`service.stragglers`); the slower one did the work it was given."""
    return round_.status == RoundStatus.CLOSED and round_.close_reason == CloseReason.STRAGGLER


def _keep_late(
    session: Session,
    annotator: Annotator,
    task: Assignment,
    round_: Round,
    campaign: Campaign,
    order: list[Any],
    now: dt.datetime,
) -> Submitted:
    """Store and credit a straggler's ranking on its closed round, marked late: not counted
    on the round (its consensus is made), kept in the data and the exports."""
    settings = campaign.config
    images = round_images(session, round_)
    positions = parse_order(order, images, settings.k, settings.allow_ties)
    passed = attention_passed(positions, images)
    if rowcount(session.execute(claim_task(TASKS.c.id == task.id))) != 1:
        return repeated(session, task.id, order)
    try:
        ranking_id = _store_and_credit(
            session, task, annotator, campaign, order, positions, passed, True, now
        )
    except IntegrityError:
        return repeated(session, task.id, order)
    return Submitted(ranking_id, round_.id, True, passed, False)


def _store_and_credit(
    session: Session,
    task: Assignment,
    annotator: Annotator,
    campaign: Campaign,
    order: list[Any],
    positions: list[Any],
    passed: bool | None,
    late: bool,
    now: dt.datetime,
) -> Any:
    """Insert the ranking for the claimed task, credit its annotator and commit; the new
    ranking's id (an IntegrityError if the task was ranked in parallel)."""
    ranking_id = session.execute(
        INSERT_RANKING,
        {
            "task_id": task.id,
            "round_id": task.round_id,
            "annotator_id": annotator.id,
            "order": list(order),
            "positions": positions,
            "passed": passed,
            "late": late,
            "now": now,
        },
    ).scalar_one()
    session.execute(
        CREDIT_ANNOTATOR,
        {
            "annotator_id": annotator.id,
            "now": now,
            **credit(campaign.config, campaign.completion_code, passed),
        },
    )
    session.commit()
    return ranking_id


__all__ = [
    "Submitted",
    "repeated",
    "straggler_kept",
    "submit",
]
