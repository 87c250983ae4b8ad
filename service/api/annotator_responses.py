"""The JSON responses about annotators, one pydantic model each, as
:mod:`service.api.responses` has the others (no extra field, every field required): the owner's
view of them (made, listed, revoked, drilled into) and their own endpoints (``GET /api/me``, a
task, a ranking accepted, a task shown).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from service.api.responses import NextOffset, Order, ResponseModel, Timestamp

AnnotatorFlag = Literal[
    "failed_attention_checks", "code_withheld", "contrarian", "low_weight", "idle"
]
# Why a participant who is done gets no completion code (the campaign's attention policy).
WithheldReason = Literal["attention_checks"]


# -- annotators (owner) ------------------------------------------------------------------------
class NewAnnotator(ResponseModel):
    id: str
    token: str = Field(description="shown once: only its hash is stored")
    link: str = Field(description="the task page with the token in the URL fragment")


class NewAnnotators(ResponseModel):
    annotators: list[NewAnnotator]


class AnnotatorRow(ResponseModel):
    id: str
    participant_id: str | None
    weight: float | None = Field(
        description="reliability weight: the campaign's evidence about them pooled over every "
        "closed round (the same number as their own view's)"
    )
    n_rankings: int
    n_attention_failed: int
    completion_withheld: bool = Field(
        description="failed more attention checks than the campaign's policy "
        "(max_attention_failures) allows: no completion code (unless one was issued before)"
    )
    created_at: Timestamp
    last_seen: Timestamp | None
    pool: bool = Field(description="works on every running campaign")
    study_id: str | None = Field(
        default=None,
        description="the study they joined through (a study worker, routed across its "
        "campaigns: their rankings, weight and flags here are this campaign's); null otherwise",
    )
    flags: list[AnnotatorFlag]
    revoked_at: Timestamp | None = Field(
        description="when the owner revoked the token; null: active"
    )
    excluded: bool = Field(description="their rankings count in no consensus after the revocation")


class AnnotatorList(ResponseModel):
    annotators: list[AnnotatorRow] = Field(description="oldest first, at most `limit`")
    next_offset: NextOffset


class AnnotatorRevoked(ResponseModel):
    id: str
    revoked_at: Timestamp
    excluded: bool


class AnnotatorRanking(ResponseModel):
    round: int
    order: Order
    attention_passed: bool | None
    late: bool
    created_at: Timestamp
    seconds: float = Field(description="from the task's lease to the ranking: time on the task")
    weight: float | None = Field(
        description="their reliability weight in that round's consensus; null: not in it"
    )


class AnnotatorDetail(ResponseModel):
    """One annotator as the owner drills into them: progress, access, every ranking."""

    id: str
    participant_id: str | None
    participant_context: dict[str, str] | None = Field(
        description="what the crowd platform passed to /join: study_id, session_id (Prolific), "
        "assignment_id, hit_id (MTurk), whichever came"
    )
    pool: bool
    study_id: str | None = Field(
        default=None, description="the study they joined through; null: not a study worker"
    )
    tasks_done: int
    tasks_quota: int
    completion_code: str | None = Field(description="the code issued to them, once issued")
    completion_withheld: bool = Field(
        description="over the campaign's attention policy: no completion code is issued"
    )
    created_at: Timestamp
    last_seen: Timestamp | None
    revoked_at: Timestamp | None
    excluded: bool
    weight: float | None = Field(
        description="reliability weight: the campaign's evidence about them pooled over every "
        "closed round, as the annotator list shows it (each ranking's weight is the one its "
        "round's consensus used)"
    )
    rankings: list[AnnotatorRanking] = Field(description="this campaign's, oldest first")


# -- annotators' own endpoints -----------------------------------------------------------------
WaitingReason = Literal[
    "others_ranking", "rendering", "not_started", "paused", "finished", "quota_reached", "none_open"
]


class Waiting(ResponseModel):
    """Why no task may be open for this annotator now, for the page to say so."""

    reason: WaitingReason
    rankings_needed: int | None = Field(
        description="others_ranking: rankings the open round still needs before it closes"
    )
    render_estimate_s: float | None = Field(
        description="rendering: how long the last round took to render; null if unknown"
    )


class Me(ResponseModel):
    annotator_id: str
    campaign_id: str | None = Field(description="null for a pool annotator")
    tasks_done: int
    tasks_quota: int | None
    completion_code: str | None = Field(
        description="set once this annotator is done (quota met, or the campaign ended)"
    )
    completion_url: str | None = Field(
        description="with the code: the owner's completion URL (e.g. Prolific's), to go to"
    )
    attention_failed: bool = Field(
        description="failed more attention checks than the campaign allows "
        "(max_attention_failures): no completion code while this holds"
    )
    completion_withheld_reason: WithheldReason | None = Field(
        description="set when this annotator is done (quota met, or the campaign ended) but gets "
        "no completion code, and says why"
    )
    waiting: Waiting = Field(
        description="what a page with no task should say (a pool annotator: none_open)"
    )


class TaskImage(ResponseModel):
    id: str
    url: str
    thumb_url: str
    alt: str


class Task(ResponseModel):
    task_id: str
    campaign_id: str
    round: int
    k: int | None = Field(description="how many images to rank; null: all of them")
    allow_ties: bool
    expires_at: Timestamp
    prompt: str
    images: list[TaskImage] = Field(description="shuffled per annotator")


class RankingAccepted(ResponseModel):
    ranking_id: int
    task_id: str
    late: bool
    attention_passed: bool | None


class TaskShownAck(ResponseModel):
    task_id: str
    expires_at: Timestamp = Field(description="the lease's end, extended by the loading time")
