"""The JSON responses of the study endpoints (:mod:`service.api.studies`), one pydantic model
each, as :mod:`service.api.responses` has the others: no extra field, every field required."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from service.api import responses


class CampaignVerdict(responses.ResponseModel):
    """One campaign's verdict, in short (the full one: GET /api/campaigns/<id>/verdict)."""

    share: float | None = Field(description="share preferring the delivered image; null: none")
    low: float | None = Field(description="95 % Wilson interval, lower end")
    high: float | None = Field(description="95 % Wilson interval, upper end")
    n: int = Field(description="decisive answers (ties apart)")


class StudyVerdict(responses.ResponseModel):
    """The study's verdict: every campaign's verdict answers pooled into one share."""

    share: float | None = Field(
        description="share of all decisive answers preferring the delivered image; null: none"
    )
    low: float | None = Field(description="95 % Wilson interval of the pooled share, lower end")
    high: float | None = Field(description="95 % Wilson interval of the pooled share, upper end")
    n: int = Field(description="decisive answers, every campaign's (ties apart)")
    prefer_delivered: int
    prefer_start: int
    ties: int
    from_non_steering: int = Field(
        description="answers from annotators who ranked no other round of their campaign"
    )
    campaigns_above: int = Field(description="campaigns whose own interval lies above 1/2")
    campaigns_below: int = Field(description="campaigns whose own interval lies below 1/2")
    campaigns_undecided: int = Field(description="campaigns whose own interval contains 1/2")
    campaigns_unanswered: int = Field(description="campaigns with no verdict answer yet")
    summary: str = Field(description="the verdict in one sentence")


class StudyCampaign(responses.ResponseModel):
    id: str
    prompt: str
    status: responses.CampaignStatus
    rounds_closed: int
    rankings: int
    current_round: int | None = Field(description="the latest round's number; null: none yet")
    current_round_status: responses.RoundStatus | None
    best_image_url: str | None = Field(
        description="the optimizer's point as of the latest render (a thumbnail); null: none yet"
    )
    verdict: CampaignVerdict


class StudySummary(responses.ResponseModel):
    id: str
    name: str
    status: responses.CampaignStatus
    created_at: responses.Timestamp
    finished_at: responses.Timestamp | None
    prompts: int = Field(description="campaigns in the study, one per prompt")
    campaigns_by_status: dict[str, int]
    rounds_closed: int
    rankings: int
    workers: int = Field(description="participants who joined through the study's link")
    link: str = Field(description="the study's one recruitment link (Prolific fills PROLIFIC_PID)")
    recruit: bool
    recruit_cap: int
    tasks_per_worker: int
    completion_code: str
    completion_url: str | None
    pay_per_hour: float | None
    settings: dict[str, Any] = Field(description="the campaign settings its prompts share")


class StudyCosts(responses.ResponseModel):
    task_s_median: float | None = Field(description="seconds from a task handed out to its ranking")
    rankings_last_hour: int
    spent: float | None = Field(description="pay_per_hour x the time spent on ranked tasks")
    rankings_left: int = Field(description="to finish every live campaign's rounds at quorum")
    to_finish: float | None = Field(description="pay_per_hour x rankings_left x task_s_median")
    rankings_saved: int = Field(
        description="rankings an adaptive quorum did not ask for: each round closed settled "
        "(or for a straggler) short of its cap, annotators_per_round less the rankings it took"
    )
    saved: float | None = Field(description="pay_per_hour x rankings_saved x task_s_median")
    worker_s: float = Field(
        description="the study's workers' time on it, summed: each one's join to their last "
        "request (written at most once a minute while they ask for work)"
    )
    idle_share: float | None = Field(
        description="the share of worker_s not on a ranked task (lease to ranking): waiting "
        "for a task, reading, tasks left to lapse; null: no worker time yet"
    )


class StudyDetail(StudySummary):
    verdict: StudyVerdict = Field(description="the crowd's verdict, pooled over the campaigns")
    costs: StudyCosts
    campaigns: list[StudyCampaign] = Field(description="in the prompt list's order")


class StudyList(responses.ResponseModel):
    studies: list[StudySummary]
    next_offset: int | None


class StudyWorker(responses.ResponseModel):
    id: str
    participant_id: str | None
    participant_context: dict[str, str] | None = Field(
        description="what the platform said about the visit (Prolific's study and session)"
    )
    tasks_done: int
    attention_failed: int = Field(description="attention checks failed")
    completion_code: str | None = Field(description="issued: the worker met the quota")
    joined_at: responses.Timestamp
    last_seen: responses.Timestamp | None


class StudyWorkerList(responses.ResponseModel):
    workers: list[StudyWorker] = Field(description="oldest first, at most `limit`")
    next_offset: int | None
