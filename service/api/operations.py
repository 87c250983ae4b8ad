"""The table of the JSON API's operations, written by hand: for each route its method, summary,
security, request model, query parameters and replies. :mod:`service.api.openapi` builds the
OpenAPI document from it and the pydantic models; tests check that every route is in the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from service import datasets, health
from service.api import responses as r
from service.api.annotators import CONTEXT_PARAMS, PARTICIPANT_PARAMS
from service.api.campaigns import ACTIONS
from service.api.common import MAX_OFFSET, MAX_PAGE_LIMIT
from service.api.exports import CONTENT_TYPES
from service.api.stream import EVENT_STREAM
from service.schemas import (
    AnnotatorRevoke,
    AnnotatorsCreate,
    CampaignCreate,
    ForkCreate,
    RankingSubmit,
    TaskShown,
)

JSON = "application/json"
NDJSON = "application/x-ndjson"
JSON_MEDIA = (JSON, NDJSON)
OWNER, ANNOTATOR = "ownerKey", "annotatorToken"  # the security schemes below
TICKET = "streamTicket"  # ?ticket= from a stream-ticket call: a stream's alternative to Bearer
REF = "#/components/schemas/{model}"
# A string in a URL: never a NUL byte (refused before any view, service/errors.py).
TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}


@dataclass(frozen=True)
class Reply:
    """One status of an operation: a body of ``model`` in each of ``media`` (none: no body)."""

    description: str
    model: type[BaseModel] | None = None
    media: tuple[str, ...] = (JSON,)


def ok(model: type[BaseModel]) -> dict[int, Reply]:
    return {200: Reply("OK", model)}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI's {name} for path parameters, which are strings
    summary: str
    security: str | tuple[str, ...] | None  # OWNER, ANNOTATOR, alternatives, or None (public)
    replies: dict[int, Reply]
    body: type[BaseModel] | None = None
    # name -> a string enum, () for any string, or a JSON schema
    query: Mapping[str, tuple[str, ...] | dict[str, Any]] = field(default_factory=dict)


CAMPAIGN = "/api/campaigns/{campaign_id}"
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/campaigns",
        "Create a campaign",
        OWNER,
        {201: Reply("Created", r.Campaign)},
        body=CampaignCreate,
    ),
    Operation(
        "get",
        "/api/campaigns",
        "List campaigns, newest first, a page at a time (next_offset: the next page)",
        OWNER,
        ok(r.CampaignList),
        query={
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT},
            "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        },
    ),
    Operation(
        "get",
        CAMPAIGN,
        "Show a campaign: status, current round, best image, history",
        OWNER,
        ok(r.Campaign),
    ),
    *(
        Operation(
            "post", f"{CAMPAIGN}/{action}", f"{action.title()} the campaign", OWNER, ok(r.Campaign)
        )
        for action in ACTIONS
    ),
    Operation(
        "post",
        f"{CAMPAIGN}/fork",
        "A new campaign from round N of this one (same state; what may change: ForkCreate)",
        OWNER,
        {201: Reply("Created", r.Campaign)},
        body=ForkCreate,
    ),
    Operation(
        "post",
        f"{CAMPAIGN}/annotators",
        "Create annotators and their task links",
        OWNER,
        {201: Reply("Created", r.NewAnnotators)},
        body=AnnotatorsCreate,
    ),
    Operation(
        "get",
        f"{CAMPAIGN}/annotators",
        "Annotators with reliability weight, throughput and flags",
        OWNER,
        ok(r.AnnotatorList),
    ),
    Operation(
        "get",
        f"{CAMPAIGN}/annotators/{{annotator_id}}",
        "One annotator: progress, quota, completion code, access, and every ranking with its "
        "time on task and their weight in that round's consensus",
        OWNER,
        ok(r.AnnotatorDetail),
    ),
    Operation(
        "post",
        f"{CAMPAIGN}/annotators/{{annotator_id}}/revoke",
        "Revoke an annotator of the campaign: their later requests answer 401; what they gave "
        "stays, marked, and with exclude counts in no later consensus",
        OWNER,
        ok(r.AnnotatorRevoked),
        body=AnnotatorRevoke,
    ),
    Operation(
        "get",
        f"{CAMPAIGN}/rounds/{{number}}",
        "One round in detail: its images, every ranking, the consensus and the optimizer's figures",
        OWNER,
        ok(r.RoundDetail),
    ),
    Operation(
        "get",
        f"{CAMPAIGN}/images.zip",
        "The delivered image of every rendered round (the optimizer's point, rendered clean), "
        "full size, in a zip: round-NNNN.png",
        OWNER,
        {200: Reply("A zip archive", media=("application/zip",))},
    ),
    Operation(
        "get",
        f"{CAMPAIGN}/recruit",
        "The recruitment link for crowd platforms and its cap",
        OWNER,
        ok(r.RecruitLink),
    ),
    Operation(
        "get",
        f"{CAMPAIGN}/export",
        "Every ranking as JSON lines (format=jsonl), or a dataset table (format=TABLE.FORMAT:"
        " rankings, consensus, pairs in the Pick-a-Pic v2 layout, consensus_pairs; JSON lines"
        " or Parquet, images by url, key or embedded in Parquet)",
        OWNER,
        {
            200: Reply(
                "JSON lines (ExportRecord each with format=jsonl), or Parquet",
                r.ExportRecord,
                (NDJSON, datasets.media_type("parquet")),
            )
        },
        query={
            "format": ("jsonl", *(f"{t}.{f}" for t in datasets.TABLES for f in datasets.FORMATS)),
            "images": datasets.IMAGE_MODES,
        },
    ),
    Operation(
        "get", "/api/me", "The annotator's progress and completion code", ANNOTATOR, ok(r.Me)
    ),
    Operation(
        "get",
        "/api/tasks/next",
        "The next task (a lease), shuffled for this annotator",
        ANNOTATOR,
        {**ok(r.Task), 204: Reply("Nothing open for this annotator now", media=())},
    ),
    Operation(
        "post",
        "/api/tasks/{task_id}/ranking",
        "Submit a ranking (image ids, best first; a list is a tie). Retry-safe: the same order "
        "sent again for the same task answers 201 with the ranking stored first (nothing new is "
        "stored); another order answers 409",
        ANNOTATOR,
        {201: Reply("Stored, or the first one for a repeat", r.RankingAccepted)},
        body=RankingSubmit,
    ),
    Operation(
        "post",
        "/api/tasks/{task_id}/shown",
        "Report that the task's images are on screen and how long they took to load: the "
        "lease is extended by that much, once per lease (at most the time it has run, and "
        "MAX_LOAD_CREDIT_S); a repeat changes nothing",
        ANNOTATOR,
        ok(r.TaskShownAck),
        body=TaskShown,
    ),
    Operation("get", "/api/openapi.json", "This document", None, {200: Reply("OpenAPI 3.1")}),
    Operation(
        "get",
        "/join/{campaign_id}",
        "Recruitment entry (when the campaign's recruit setting is on; a participant id is "
        "required): creates the participant's annotator and redirects to /task#token=...; a "
        "participant who already joined is sent to /task#rejoin=<campaign_id>, and keeps "
        "their token. Prolific's STUDY_ID and SESSION_ID and MTurk's assignmentId, hitId and "
        "turkSubmitTo (only when it is MTurk's) are kept with a new participant; with an "
        "assignmentId and MTurk's turkSubmitTo the redirect's fragment carries both, for the "
        "task page to post the finished assignment to MTurk. A refusal (4xx, the join rate "
        "limit's 429 too) is a page in the worker's language (Accept-Language) for a client "
        "that prefers text/html, the JSON error otherwise",
        None,
        {
            200: Reply(
                "MTurk's preview (assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE): a page that says to "
                "accept the HIT; nobody joins",
                media=("text/html",),
            ),
            302: Reply("Redirect to the task page (Cache-Control: no-store)", media=()),
        },
        query={name: () for name in (*PARTICIPANT_PARAMS, *CONTEXT_PARAMS)},
    ),
    Operation(
        "get",
        "/objects/{key}",
        "A round image or thumbnail from the local store (S3 stores hand out presigned URLs "
        "instead)",
        None,
        {200: Reply("The image", media=tuple(CONTENT_TYPES.values()))},
    ),
    Operation(
        "get",
        f"{CAMPAIGN}/events",
        "The campaign's audit log, newest first, a page at a time (next_offset: the next page)",
        OWNER,
        ok(r.EventList),
        query={
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT},
            "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        },
    ),
    Operation(
        "post",
        f"{CAMPAIGN}/stream-ticket",
        "A ticket that opens the campaign's live stream for a minute (EventSource cannot send "
        "an Authorization header; the key never goes in a URL)",
        OWNER,
        ok(r.StreamTicket),
    ),
    Operation(
        "get",
        f"{CAMPAIGN}/stream",
        "Live updates, server-sent events: `campaign` (status, current round and its status, "
        "rankings in it) first and on every change, heartbeat comments, `end` after about 25 s "
        "(open a new stream). Authorized by ?ticket= from stream-ticket, or Bearer. 503 with "
        "Retry-After when the server holds too many streams: poll instead",
        (OWNER, TICKET),
        {200: Reply("An event stream", media=(EVENT_STREAM,))},
    ),
    Operation(
        "post",
        "/api/tasks/stream-ticket",
        "A ticket that opens this annotator's live stream for a minute",
        ANNOTATOR,
        ok(r.StreamTicket),
    ),
    Operation(
        "get",
        "/api/tasks/stream",
        "Live updates for a waiting annotator, server-sent events: `waiting` first and on "
        "every change of what waiting depends on (their campaign's status and round; for a pool "
        "annotator the open rounds of running campaigns): ask GET /api/tasks/next again then; "
        "`end` after about 25 s or when the token is revoked. Authorized by ?ticket= from "
        "stream-ticket, or Bearer; 503 with Retry-After: poll instead",
        (ANNOTATOR, TICKET),
        {200: Reply("An event stream", media=(EVENT_STREAM,))},
    ),
    Operation(
        "post",
        "/api/previews",
        "Render a campaign's starting image before creating it (the settings of POST "
        "/api/campaigns, validated the same; rendered by the workers: poll GET /api/previews/ID)",
        OWNER,
        {202: Reply("Queued", r.Preview)},
        body=CampaignCreate,
    ),
    Operation(
        "get",
        "/api/previews/{preview_id}",
        "A preview: 202 while rendering, 200 when ready (the image) or failed (the error)",
        OWNER,
        {200: Reply("Ready or failed", r.Preview), 202: Reply("Still rendering", r.Preview)},
    ),
    Operation("get", "/healthz", "Liveness: the process serves requests", None, ok(health.Alive)),
    Operation(
        "get",
        "/readyz",
        "Readiness: database, broker, object store reachable and migrations at head",
        None,
        {200: Reply("Ready", health.Readiness), 503: Reply("Not ready", health.Readiness)},
    ),
    Operation(
        "get",
        "/metrics",
        "Prometheus metrics (text exposition format)",
        None,
        {200: Reply("Metrics", media=("text/plain",))},
    ),
)
