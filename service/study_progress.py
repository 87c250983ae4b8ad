"""How a study stands: its status as its workers and its link see it, what its rankings cost
and what is left, and a study worker's progress (``GET /api/me``)."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Row, case, func, select
from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import CampaignSettings
from rankloop.core.contracts import (
    CAMPAIGN_CONCLUDED,
    CAMPAIGN_ENDED,
    CampaignStatus,
    CloseReason,
    RoundStatus,
)
from service.crediting import ISSUE_COMPLETION_CODE, code_withheld
from service.models import Annotator, Assignment, Campaign, Ranking, Round, Study, utcnow
from service.studies import campaigns_of


def status_of(session: Session, study: Study) -> str:
    """The study's status: as its owner set it, but ``finished`` for a started study whose every
    campaign ended (each finished its rounds, or was stopped on its own): nothing is left to
    rank, its link admits no one, and its workers are owed their code."""
    if study.status not in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
        return study.status
    live = session.scalar(
        select(Campaign.id)
        .where(Campaign.study_id == study.id, Campaign.status.not_in(CAMPAIGN_ENDED))
        .limit(1)
    )
    return study.status if live is not None else CampaignStatus.FINISHED


@dataclass(frozen=True)
class Costs:
    """What a study's rankings took and cost so far, and the estimate to finish."""

    task_s_median: float | None  # seconds from a task handed out to its ranking
    rankings_last_hour: int
    spent: float | None  # pay_per_hour x the time workers spent on ranked tasks
    rankings_left: int  # to finish every live campaign's round budget at its quorum
    to_finish: float | None  # pay_per_hour x rankings_left x the median task time
    rankings_saved: int  # rounds closed short of their cap because they were settled
    saved: float | None  # pay_per_hour x rankings_saved x the median task time
    worker_s: float  # the study's workers' time on it: each one's join to their last request
    idle_share: float | None  # of worker_s, the share not on a ranked task; None: no time yet


def costs(session: Session, study: Study, now: dt.datetime | None = None) -> Costs:
    """The study's measured task times and what they cost (``pay_per_hour``); the rankings left
    to make are each live campaign's rounds not yet closed at its quorum, less the rankings its
    open round already has."""
    now = now or utcnow()
    rows = session.execute(
        select(Ranking.created_at, Assignment.created_at, Ranking.annotator_id)
        .join(Assignment, Assignment.id == Ranking.assignment_id)
        .join(Round, Round.id == Ranking.round_id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Campaign.study_id == study.id)
    ).all()
    seconds = sorted(max(0.0, (ranked - leased).total_seconds()) for ranked, leased, _ in rows)
    median = statistics.median(seconds) if seconds else None
    rounds = {
        campaign_id: (closed or 0, ranked or 0)
        for campaign_id, closed, ranked in session.execute(
            select(
                Round.campaign_id,
                func.sum(case((Round.status == RoundStatus.CLOSED, 1), else_=0)),
                func.sum(case((Round.status == RoundStatus.OPEN, Round.n_rankings), else_=0)),
            )
            .join(Campaign, Campaign.id == Round.campaign_id)
            .where(Campaign.study_id == study.id)
            .group_by(Round.campaign_id)
        )
    }
    took = _settled_rounds(session, study)
    left = saved = 0
    for campaign in campaigns_of(session, study.id):
        config = campaign.config
        cap = config.annotators_per_round
        saved += sum(max(0, cap - n) for n in took.get(campaign.id, ()))
        if campaign.status in CAMPAIGN_ENDED:
            continue
        closed, ranked = rounds.get(campaign.id, (0, 0))
        left += max(0, (config.rounds - closed) * cap - ranked)
    pay = study.pay_per_hour
    present = worker_time(session, study, rows)
    worker_s = sum(total for total, _ in present)
    return Costs(
        task_s_median=median,
        rankings_last_hour=sum(1 for ranked, _, _ in rows if now - ranked <= dt.timedelta(hours=1)),
        spent=None if pay is None else pay * sum(seconds) / 3600,
        rankings_left=left,
        to_finish=None if pay is None or median is None else pay * left * median / 3600,
        rankings_saved=saved,
        saved=None if pay is None or median is None else pay * saved * median / 3600,
        worker_s=worker_s,
        idle_share=1 - sum(task for _, task in present) / worker_s if worker_s > 0 else None,
    )


def _settled_rounds(session: Session, study: Study) -> dict[str, list[int]]:
    """The rankings each closed round of the study's campaigns took, for the rounds that closed
    before their cap because their decision was settled (an adaptive quorum's ``settled``, or
    ``straggler`` for a round whose last slot went to one more annotator): what the adaptive
    quorum saved is each one's cap less these (a fixed round closes at its cap, saving none)."""
    rows = session.execute(
        select(Round.campaign_id, Round.n_rankings)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(
            Campaign.study_id == study.id,
            Round.status == RoundStatus.CLOSED,
            Round.close_reason.in_([CloseReason.SETTLED, CloseReason.STRAGGLER]),
        )
    ).all()
    took: dict[str, list[int]] = {}
    for campaign_id, n_rankings in rows:
        took.setdefault(campaign_id, []).append(n_rankings or 0)
    return took


def worker_time(
    session: Session, study: Study, rankings: Sequence[Row[dt.datetime, dt.datetime, str]]
) -> list[tuple[float, float]]:
    """Each study worker's (time on the study, time on ranked tasks), in seconds. Time on the
    study runs from their join to their last request (``last_seen``, written at most once a
    minute while they ask for work, and with each ranking); time on a task from its lease to
    its ranking. The rest is idle: waiting for a task (paid time on Prolific), reading, or a
    task left to lapse. Never less than the task time (``last_seen``'s minute)."""
    on_task: dict[str, float] = {}
    for ranked, leased, annotator_id in rankings:
        on_task[annotator_id] = on_task.get(annotator_id, 0.0) + max(
            0.0, (ranked - leased).total_seconds()
        )
    workers = session.execute(
        select(Annotator.id, Annotator.created_at, Annotator.last_seen).where(
            Annotator.study_id == study.id
        )
    ).all()
    times = []
    for annotator_id, joined, last_seen in workers:
        task = on_task.get(annotator_id, 0.0)
        there = (last_seen - joined).total_seconds() if last_seen is not None else 0.0
        times.append((max(there, task), task))
    return times


@dataclass(frozen=True)
class WorkerProgress:
    """What ``GET /api/me`` tells a study's worker."""

    quota: int
    completion_code: str | None
    completion_url: str | None
    attention_failed: bool
    done: bool
    waiting: str  # an annotator_responses.WaitingReason


def worker_progress(session: Session, annotator: Annotator) -> WorkerProgress:
    """A study worker's progress: the study's quota; its completion code, issued here once the
    study was stopped after they ranked (the quota met issues it with the ranking); and why a
    page with no task has none (the study's status, the quota, else work yet to come)."""
    study = session.get(Study, annotator.study_id)
    assert study is not None  # a foreign key
    settings = CampaignSettings.from_stored(study.settings)
    status = status_of(session, study)
    concluded = status in CAMPAIGN_CONCLUDED
    code: str | None = annotator.completion_code
    if (
        code is None
        and concluded
        and annotator.tasks_done
        and not code_withheld(settings, annotator)
    ):
        code = session.execute(
            ISSUE_COMPLETION_CODE, {"annotator_id": annotator.id, "code": study.completion_code}
        ).scalar_one()
        session.commit()
    quota_met = annotator.tasks_done >= study.tasks_per_worker
    waiting = (
        "finished"
        if status in CAMPAIGN_ENDED
        else "not_started"
        if status == CampaignStatus.DRAFT
        else "paused"
        if status == CampaignStatus.PAUSED
        else "quota_reached"
        if quota_met
        else "none_open"
    )
    return WorkerProgress(
        quota=study.tasks_per_worker,
        completion_code=code,
        completion_url=study.completion_url if code else None,
        attention_failed=code is None and code_withheld(settings, annotator),
        done=quota_met or (concluded and annotator.tasks_done > 0),
        waiting=waiting,
    )


__all__ = ["Costs", "WorkerProgress", "costs", "status_of", "worker_progress", "worker_time"]
