"""The JSON responses of the API, one pydantic model each: the shape is written once, here.

The endpoints build their answers through these models (``Model(...).model_dump(mode="json")``)
and ``/api/openapi.json`` is generated from them, so the document cannot drift from what the
API returns. Every model forbids extra fields and has no defaults, so its JSON schema has
``additionalProperties: false`` and lists every field as required: a response with a field too
many or too few fails the schema (``tests/test_service_api.py`` checks real responses).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Response as FlaskResponse
from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from rankloop.core.contracts import CAMPAIGN_STATUSES, IMAGE_ROLES, ROUND_STATUSES


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Names from the contracts appear in the document as enums; the test checks real values.
Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, description="UTC, ISO 8601, ends in Z")
]
CampaignStatus = Annotated[str, Field(json_schema_extra={"enum": list(CAMPAIGN_STATUSES)})]
RoundStatus = Annotated[str, Field(json_schema_extra={"enum": list(ROUND_STATUSES)})]
ImageRole = Annotated[str, Field(json_schema_extra={"enum": list(IMAGE_ROLES)})]
AnnotatorFlag = Literal["failed_attention_checks", "contrarian", "low_weight", "idle"]
# A ranking: image ids best first; a list inside it is a group of tied images.
Order = list[str | list[str]]


# -- campaigns and rounds (owner) --------------------------------------------------------------
class RoundImage(_Response):
    id: str
    url: str
    thumb_url: str
    role: ImageRole
    index: int = Field(description="the optimizer's index of a candidate")


class RoundConsensus(_Response):
    order: list[str] = Field(description="image ids, best first")
    agreement: float | None
    weights: dict[str, float] = Field(description="reliability weight per annotator id")
    method: str


class Round(_Response):
    number: int
    kind: str | None
    status: RoundStatus
    quorum: int
    rankings_count: int
    deadline: Timestamp | None
    extensions: int
    error: str | None
    images: list[RoundImage]
    consensus: RoundConsensus | None


class HistoryEntry(_Response):
    number: int
    kind: str | None
    status: RoundStatus
    best_image_url: str | None = Field(description="the round's consensus winner")
    current_best_url: str | None = Field(description="the optimizer's point after the round")
    agreement: float | None
    n_rankings: int
    stats: dict[str, Any]
    render_seconds: float | None
    opened_at: Timestamp | None
    closed_at: Timestamp | None


class CampaignSummary(_Response):
    """A campaign as listed: everything but the history of its rounds."""

    id: str
    name: str
    prompt: str
    status: CampaignStatus
    error: str | None
    created_at: Timestamp
    finished_at: Timestamp | None
    settings: dict[str, Any]
    completion_code: str
    rounds_done: int
    current_round: Round | None
    best_image_url: str | None = Field(
        description="the consensus winner of the latest decided round"
    )
    current_best_image_url: str | None = Field(
        description="the optimizer's current point, rendered clean"
    )


class Campaign(CampaignSummary):
    history: list[HistoryEntry]


class CampaignList(_Response):
    campaigns: list[CampaignSummary] = Field(description="newest first")


# -- annotators (owner) ------------------------------------------------------------------------
class NewAnnotator(_Response):
    id: str
    token: str = Field(description="shown once: only its hash is stored")
    link: str = Field(description="the task page with the token in the URL fragment")


class NewAnnotators(_Response):
    annotators: list[NewAnnotator]


class AnnotatorRow(_Response):
    id: str
    participant_id: str | None
    weight: float | None = Field(description="reliability weight from the consensus")
    n_rankings: int
    n_attention_failed: int
    created_at: Timestamp
    last_seen: Timestamp | None
    pool: bool = Field(description="works on every running campaign")
    flags: list[AnnotatorFlag]


class AnnotatorList(_Response):
    annotators: list[AnnotatorRow]


class RecruitLink(_Response):
    link: str = Field(description="for Prolific: PROLIFIC_PID is filled in by the platform")
    mturk_link: str = Field(description="for MTurk's ExternalQuestion, which appends workerId")
    cap: int
    joined: int
    completion_code: str


# -- exports (owner) ---------------------------------------------------------------------------
class ExportImage(_Response):
    id: str
    key: str
    index: int
    role: ImageRole


class ExportRecord(_Response):
    """One line of the JSON-lines export: a ranking, who gave it, when and on which images."""

    ranking_id: int
    campaign_id: str
    round: int
    round_kind: str | None
    annotator_id: str
    submitted_at: Timestamp
    late: bool
    attention_passed: bool | None
    order: Order
    order_keys: list[str | list[str]] = Field(description="the order as object-store keys")
    images: list[ExportImage]
    prompt: str


# -- annotators' own endpoints -----------------------------------------------------------------
class Me(_Response):
    annotator_id: str
    campaign_id: str | None = Field(description="null for a pool annotator")
    tasks_done: int
    tasks_quota: int | None
    completion_code: str | None = Field(description="set once the campaign has ended")


class TaskImage(_Response):
    id: str
    url: str
    thumb_url: str
    alt: str


class Task(_Response):
    task_id: str
    campaign_id: str
    round: int
    k: int | None = Field(description="how many images to rank; null: all of them")
    allow_ties: bool
    expires_at: Timestamp
    prompt: str
    images: list[TaskImage] = Field(description="shuffled per annotator")


class RankingAccepted(_Response):
    ranking_id: int
    task_id: str
    late: bool
    attention_passed: bool | None


# -- errors ------------------------------------------------------------------------------------
class ErrorBody(_Response):
    code: str
    message: str
    details: Any = Field(description="per-field problems of a 422, else null")


class Error(_Response):
    error: ErrorBody


def json_response(model: BaseModel, status: int = 200) -> FlaskResponse:
    """``model`` as the JSON body of a response with ``status``."""
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    return response
