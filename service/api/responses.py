"""The JSON responses of the API, one pydantic model each: the shape is written once, here.

The endpoints build their answers through these models (``Model(...).model_dump(mode="json")``)
and ``/api/openapi.json`` is generated from them, so the document cannot drift from what the
API returns. Every model forbids extra fields and has no defaults, so its JSON schema has
``additionalProperties: false`` and lists every field as required: a response with a field too
many or too few fails the schema (``tests/test_service_api.py`` checks real responses).

The annotators' models are in :mod:`service.api.annotator_responses`, the studies' in
:mod:`service.api.study_responses`; they build on :class:`ResponseModel` and the names here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from flask import Response as FlaskResponse
from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.wrappers import Response as WerkzeugResponse

from rankloop.core import contracts


class ResponseModel(BaseModel):
    """Every response model's base: no extra field (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid")


def _words(family: type[StrEnum]) -> list[str]:
    return [member.value for member in family]


# Names from the contracts appear in the document as enums; the test checks real values.
Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, description="UTC, ISO 8601, ends in Z")
]
CampaignStatus = Annotated[str, Field(json_schema_extra={"enum": _words(contracts.CampaignStatus)})]
RoundStatus = Annotated[str, Field(json_schema_extra={"enum": _words(contracts.RoundStatus)})]
ImageRole = Annotated[str, Field(json_schema_extra={"enum": _words(contracts.ImageRole)})]
CloseReason = Annotated[str, Field(json_schema_extra={"enum": _words(contracts.CloseReason)})]
# A listed page's link to the next (service.api.common.page_of).
NextOffset = Annotated[
    int | None, Field(description="the `offset` of the next page; null on the last page")
]
# A ranking: image ids best first; a list inside it is a group of tied images.
Order = list[str | list[str]]


# -- campaigns and rounds (owner) --------------------------------------------------------------
class RoundImage(ResponseModel):
    id: str
    url: str
    thumb_url: str
    role: ImageRole
    index: int = Field(description="the optimizer's index of a candidate")


class RoundConsensus(ResponseModel):
    order: list[str] = Field(description="image ids, best first")
    agreement: float | None
    distinguishable: bool | None = Field(
        description="whether the annotators told the images apart: their agreement above chance "
        "by the optimizer's threshold (rankloop.core.optimizer.visibility); null under two "
        "rankings"
    )
    weights: dict[str, float] = Field(description="reliability weight per annotator id")
    method: str


class Round(ResponseModel):
    number: int
    kind: str | None
    status: RoundStatus
    quorum: int = Field(
        description="rankings the round waits for now (adaptive: raised one at "
        "a time while its decision is unsettled)"
    )
    quorum_cap: int = Field(description="the most rankings it may take (annotators_per_round)")
    rankings_count: int
    close_reason: CloseReason | None = Field(
        default=None,
        description="why the round closed: settled (adaptive quorum: its decision was settled), "
        "cap (annotators_per_round rankings in), deadline (adaptive: its deadline came, "
        "unsettled), straggler (one more annotator was offered its last slot and answered "
        "first); null while open, and for rounds closed before this was recorded",
    )
    straggler_offered_at: Timestamp | None = Field(
        default=None, description="when its last slot was offered to one more annotator"
    )
    deadline: Timestamp | None
    extensions: int
    error: str | None
    images: list[RoundImage]
    consensus: RoundConsensus | None
    age_s: float | None = Field(
        description="seconds the round has been in its status (rendering: since its render "
        "was sent; open: since it opened; closed: since it closed)"
    )
    problem: str | None = Field(
        description="its last problems from the audit log (render re-sent, deadline extended, "
        "a failed step and its error), newest last; null when none"
    )


class HistoryEntry(ResponseModel):
    number: int
    kind: str | None
    status: RoundStatus
    best_image_url: str | None = Field(description="the round's consensus winner")
    best_thumb_url: str | None = Field(description="the winner's thumbnail")
    current_best_url: str | None = Field(description="the optimizer's point after the round")
    agreement: float | None
    n_rankings: int
    close_reason: CloseReason | None = Field(
        default=None,
        description="why the round closed: settled (adaptive quorum: its decision was settled), "
        "cap (annotators_per_round rankings in), deadline (adaptive: its deadline came, "
        "unsettled), straggler (one more annotator was offered its last slot and answered "
        "first); null while open, and for rounds closed before this was recorded",
    )
    stats: dict[str, Any]
    render_seconds: float | None
    opened_at: Timestamp | None
    closed_at: Timestamp | None


class CampaignSummary(ResponseModel):
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
    study_id: str | None = Field(
        default=None, description="the study it is a prompt of; null: a campaign on its own"
    )


class Verdict(ResponseModel):
    """The crowd's verdict (rankloop.core.verdict): answers to the campaign's verdict rounds."""

    share: float | None = Field(
        description="share of the decisive answers preferring the delivered image to the start; "
        "null before any"
    )
    low: float | None = Field(description="95 % Wilson interval, lower end")
    high: float | None = Field(description="95 % Wilson interval, upper end")
    n: int = Field(description="decisive answers (ties apart)")
    prefer_delivered: int
    prefer_start: int
    ties: int
    from_non_steering: int = Field(
        description="answers from annotators who ranked no other round of the campaign"
    )
    summary: str = Field(description="the verdict in one sentence")
    rounds: list[int] = Field(description="the campaign's verdict rounds")
    open: bool = Field(description="a verdict round is collecting answers now")


class StrengthPoint(ResponseModel):
    round: int = Field(description="the round whose best image this is")
    strength: float = Field(
        description="relative to round 0's best (0), in utility units: an honest annotator's "
        "noise is 1"
    )
    low: float = Field(description="95 % interval, lower end")
    high: float = Field(description="95 % interval, upper end")


class Improvement(ResponseModel):
    points: list[StrengthPoint] = Field(description="round 0's first; empty before two rounds")


class Estimate(ResponseModel):
    """What one ranking of a campaign of the asked shape costs in annotator time and pay."""

    seconds_per_ranking: float = Field(
        description="annotator seconds per ranking: measured on this deployment when it has "
        "rankings, else the stated default"
    )
    default_seconds_per_ranking: float = Field(
        description="the stated default for this shape: read the prompt, look at every image, "
        "pick (rankloop.core.contracts.typical_ranking_s)"
    )
    measured: bool = Field(description="seconds_per_ranking was measured here")
    n_measured: int = Field(description="rankings measured (the latest, on time)")
    pay_per_hour: float = Field(description="the deployment's setting RANKLOOP_PAY_PER_HOUR")


class Campaign(CampaignSummary):
    verdict: Verdict
    history: list[HistoryEntry]


class Event(ResponseModel):
    id: int
    at: Timestamp
    kind: str = Field(description="e.g. round_render_resent, round_extended, round_failed")
    round: int | None
    actor: str | None
    data: dict[str, Any] | None


class EventList(ResponseModel):
    events: list[Event] = Field(description="newest first, at most `limit`")
    next_offset: NextOffset


class CampaignList(ResponseModel):
    campaigns: list[CampaignSummary] = Field(description="newest first, at most `limit`")
    next_offset: NextOffset


# -- one round in detail (owner) ---------------------------------------------------------------
class RoundRanking(ResponseModel):
    annotator_id: str
    participant_id: str | None
    order: Order
    attention_passed: bool | None
    late: bool
    created_at: Timestamp
    excluded: bool = Field(description="left out of consensus (an annotator revoked and excluded)")


class RoundDetail(ResponseModel):
    """A round as the owner drills into it: images, every ranking, the consensus, the step."""

    number: int
    kind: str | None
    status: RoundStatus
    quorum: int
    quorum_cap: int
    close_reason: CloseReason | None = Field(
        default=None,
        description="why the round closed: settled (adaptive quorum: its decision was settled), "
        "cap (annotators_per_round rankings in), deadline (adaptive: its deadline came, "
        "unsettled), straggler (one more annotator was offered its last slot and answered "
        "first); null while open, and for rounds closed before this was recorded",
    )
    straggler_offered_at: Timestamp | None = None
    images: list[RoundImage]
    rankings: list[RoundRanking] = Field(description="in the order they were submitted")
    consensus: RoundConsensus | None
    stats: dict[str, Any] = Field(description="the optimizer's figures for the round (step, ...)")
    render_seconds: float | None
    opened_at: Timestamp | None
    closed_at: Timestamp | None


class RecruitLink(ResponseModel):
    enabled: bool = Field(
        description="whether /join admits participants (the campaign's recruit setting); "
        "off by default"
    )
    link: str = Field(description="for Prolific: PROLIFIC_PID is filled in by the platform")
    mturk_link: str = Field(description="for MTurk's ExternalQuestion, which appends workerId")
    cap: int = Field(description="participants /join admits")
    joined: int = Field(description="participants who joined through /join (counted by the cap)")
    owner_links: int = Field(description="task links the owner made (not counted by the cap)")
    completion_code: str
    completion_url: str | None = Field(description="where finished participants are sent")


# -- exports (owner) ---------------------------------------------------------------------------
class ExportImage(ResponseModel):
    id: str
    key: str
    index: int
    role: ImageRole


class ExportRecord(ResponseModel):
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


# -- live updates (service/api/stream.py) -----------------------------------------------------
class StreamTicket(ResponseModel):
    """Opens one server-sent event stream, for a minute after it was made: for EventSource,
    which cannot send an Authorization header (the key itself never goes in a URL)."""

    ticket: str
    url: str = Field(
        description="this server's own stream route with the ticket, relative to the server "
        "(polling; the fallback)"
    )
    stream_url: str = Field(
        description="where to open the stream: the stream process (absolute when "
        "RANKLOOP_STREAM_URL names its origin), else the same as url"
    )
    expires_at: Timestamp


# -- previews (service/api/previews.py) ---------------------------------------------------------
class Preview(ResponseModel):
    """The starting image of a campaign not yet created, rendered by the workers."""

    id: str
    status: Literal["rendering", "ready", "failed"]
    image_url: str | None = Field(description="the starting image, full size, once ready")
    thumb_url: str | None
    render_seconds: float | None
    error: str | None = Field(description="the worker's message, when the render failed")


# -- errors ------------------------------------------------------------------------------------
class ErrorBody(ResponseModel):
    code: str = Field(
        description="what went wrong, for a program: the status's own (unauthorized, forbidden, "
        "not_found, conflict, gone, invalid_input, ...), or a finer one: token_revoked (401, an "
        "annotator token the owner revoked)"
    )
    message: str
    details: Any = Field(description="per-field problems of a 422, else null")


class Error(ResponseModel):
    error: ErrorBody


_R = TypeVar("_R", bound=WerkzeugResponse)


def no_store(response: _R) -> _R:
    """``response`` marked never to be kept by a browser or proxy cache: it carries a token,
    or tells whose token it is."""
    response.headers["Cache-Control"] = "no-store"
    return response


def json_response(model: BaseModel, status: int = 200) -> FlaskResponse:
    """``model`` as the JSON body of a response with ``status``."""
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    return response
