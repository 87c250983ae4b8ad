"""Owner endpoints for studies: create from a prompt list, list, show, start/pause/stop, export.

A study is visible to the owner key that created it (and the admin token) only: to anyone else
it does not exist (404), so a study's id tells nothing about another owner's work.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from sqlalchemy import func, select

from rankloop.core.contracts import DEFAULT_GENERATOR, CampaignStatus, RoundStatus
from rankloop.core.errors import InvalidInput, NotFound
from rankloop.core.verdict import pool, spread
from service import datasets, studies, study_progress, verdicts
from service.api import exports
from service.api import study_responses as r
from service.api.common import (
    PAGE_QUERY,
    base_url,
    check_model,
    iso,
    json_body,
    object_url,
    page_of,
    store,
)
from service.api.responses import json_response, no_store
from service.auth import Owner, require_owner
from service.db import get_session
from service.models import Annotator, Campaign, Ranking, Round, Study
from service.prompt_lists import BadPromptList, format_of, read_json, read_upload
from service.rendering import run_step
from service.routing import NDJSON, Reply, ok, operation
from service.schemas import validate
from service.study_export import study_table
from service.transitions import owner_actor

bp = Blueprint("studies", __name__, url_prefix="/api/studies")


# -- routes ----------------------------------------------------------------------------------------
@operation(
    bp,
    "POST",
    "",
    summary=(
        "Create a study: one campaign per prompt, under shared settings and one recruitment "
        "link. The prompts come in the JSON body (prompts), or as an uploaded file "
        "(multipart/form-data: file, with the rest of this body as the JSON form field "
        "'study', and optionally 'format': lines, csv, jsonl, parquet or hf; by default the "
        "file's suffix says). CSV, JSON Lines and Parquet need a prompt column, and may give "
        "negative_prompt and seed per row; hf is a zip of a Hugging Face datasets folder "
        "(save_to_disk), read for the same columns. A bad row is refused with its line (422, "
        "details[].line), and nothing is created"
    ),
    auth="owner",
    body=studies.StudyCreate,
    responses={201: Reply("Created", r.StudyDetail)},
)
def create_study():
    session = get_session()
    owner = require_owner(session)
    body, rows = _create_request()
    _check_model(body.settings)
    study = studies.create(session, body, rows, owner.key_id, owner_actor(owner.key_id))
    if body.start:
        run_step(studies.control, study.id, "start", owner_actor(owner.key_id), session=session)
    session.expire_all()
    return no_store(json_response(study_response(study, detail=True), 201))


def _check_model(settings: dict[str, Any]) -> None:
    """The shared settings' model, refused unless the operator lists it (``check_model``)."""
    generator = settings.get("generator", DEFAULT_GENERATOR)
    if isinstance(generator, str):  # a bad type is the row check's to name
        model = settings.get("model")
        check_model(generator, model if isinstance(model, str) else None)


def _create_request() -> tuple[studies.StudyCreate, list[Any]]:
    """The body and its prompt rows, from a JSON body or an upload."""
    upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
    if upload is None:
        body: studies.StudyCreate = validate(studies.StudyCreate, json_body())
        if body.prompts is None:
            raise BadPromptList("give prompts, or upload a file (multipart/form-data: file)")
        return body, read_json(body.prompts)
    raw = request.form.get("study", "{}")
    try:
        fields = json.loads(raw)
    except ValueError as error:
        raise InvalidInput(f"the form field 'study' is not JSON: {error}") from None
    body = validate(studies.StudyCreate, fields)
    if body.prompts is not None:
        raise BadPromptList("give prompts or a file, not both")
    fmt = format_of(upload.filename, request.form.get("format"))
    return body, read_upload(upload.stream, fmt)


@operation(
    bp,
    "GET",
    "",
    summary="List studies, newest first, a page at a time (next_offset: the next page)",
    auth="owner",
    query=PAGE_QUERY,
    responses=ok(r.StudyList),
)
def list_studies():
    session = get_session()
    owner = require_owner(session)
    query = select(Study).order_by(Study.created_at.desc(), Study.id)
    if not owner.is_admin:
        query = query.where(Study.owner_key_id == owner.key_id)
    page, more = page_of(session, query)
    listed = [study_response(s, detail=False) for s in page]
    return no_store(json_response(r.StudyList(studies=listed, next_offset=more)))


@operation(
    bp,
    "GET",
    "/<study_id>",
    summary=(
        "Show a study: the crowd's verdict pooled over its campaigns (95 % Wilson interval, "
        "and how many campaigns' own intervals lie above or below 1/2), status, counts, and "
        "each campaign's id, prompt, status, rounds closed and verdict"
    ),
    auth="owner",
    responses=ok(r.StudyDetail),
)
def show_study(study_id: str):
    study, _ = owned_study(study_id)
    return no_store(json_response(study_response(study, detail=True)))


def control_study(study_id: str, action: str):
    study, owner = owned_study(study_id)
    session = get_session()
    run_step(studies.control, study.id, action, owner_actor(owner.key_id), session=session)
    session.expire_all()
    return no_store(json_response(study_response(study, detail=True)))


_SAYS = {
    "start": "Start the study: every campaign of it (a paused one resumes)",
    "pause": "Pause the study: every running campaign of it",
    "stop": "Stop the study: every campaign of it not ended yet; its link admits no one more",
}
for _action in studies.CONTROLS:
    operation(
        bp,
        "POST",
        f"/<study_id>/{_action}",
        summary=_SAYS[_action],
        auth="owner",
        responses=ok(r.StudyDetail),
        endpoint=f"control_{_action}",
        defaults={"action": _action},
    )(control_study)


@operation(
    bp,
    "POST",
    "/<study_id>/duplicate",
    summary=(
        "A new draft study with this one's prompts (each with its overrides), shared settings, "
        "link settings and pay, and a completion code of its own; the completion URL carries "
        "over only when it names no code"
    ),
    auth="owner",
    body=studies.StudyDuplicate,
    responses={201: Reply("Created", r.StudyDetail)},
)
def duplicate_study(study_id: str):
    study, owner = owned_study(study_id)
    body: studies.StudyDuplicate = validate(studies.StudyDuplicate, json_body())
    _check_model(study.settings)  # one since taken off the operator's list is not rendered
    session = get_session()
    copy = studies.duplicate(session, study.id, body.name, owner.key_id, owner_actor(owner.key_id))
    return no_store(json_response(study_response(copy, detail=True), 201))


@operation(
    bp,
    "GET",
    "/<study_id>/export",
    summary=(
        "Every ranking of every campaign of the study, campaign by campaign in the prompt "
        "list's order: as JSON lines (format=jsonl: ExportRecord each, with its campaign_id and "
        "prompt), or as one dataset table (format=TABLE.FORMAT, images=...: those of a "
        "campaign's export, every row naming its campaign and prompt)"
    ),
    auth="owner",
    query=exports.EXPORT_QUERY,
    responses=exports.EXPORT_REPLIES,
)
def export_study(study_id: str):
    study, _ = owned_study(study_id)
    fmt, table, kind, mode = exports.export_request()
    session = get_session()
    ids = [c.id for c in studies.campaigns_of(session, study.id)]
    session.close()  # every batch reads in its own short transaction
    maker = current_app.extensions["rankloop_sessionmaker"]
    body: Iterator[bytes]
    if fmt == "jsonl":
        records = (exports.records(datasets.CampaignSource(maker, cid)) for cid in ids)
        body, media, name = itertools.chain.from_iterable(records), NDJSON, ".jsonl"
    else:
        images = datasets.Images(mode, get=store().get, url=exports.absolute_url)
        body = study_table(maker, ids, table, kind, images)
        media, name = datasets.media_type(kind), f"-{table}.{kind}"
    response = Response(stream_with_context(body), mimetype=media)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="rankloop-study-{study.id}{name}"'
    )
    return response


@operation(
    bp,
    "GET",
    "/<study_id>/workers",
    summary=(
        "The study's workers, oldest first, a page at a time: participant id and the "
        "platform's visit, tasks done, attention checks failed, completion code (to match "
        "payments on the crowd platform)"
    ),
    auth="owner",
    query=PAGE_QUERY,
    responses=ok(r.StudyWorkerList),
)
def list_workers(study_id: str):
    study, _ = owned_study(study_id)
    page, more = page_of(
        get_session(),
        select(Annotator)
        .where(Annotator.study_id == study.id)
        .order_by(Annotator.created_at, Annotator.id),
    )
    workers = [
        r.StudyWorker(
            id=a.id,
            participant_id=a.participant_id,
            participant_context=a.participant_context,
            tasks_done=a.tasks_done,
            attention_failed=a.attention_failed,
            completion_code=a.completion_code,
            joined_at=iso(a.created_at),
            last_seen=iso(a.last_seen),
        )
        for a in page
    ]
    return no_store(json_response(r.StudyWorkerList(workers=workers, next_offset=more)))


# -- helpers ---------------------------------------------------------------------------------------
def owned_study(study_id: str) -> tuple[Study, Owner]:
    """The study the request's owner asks for, and that owner: 401 without an owner's key, 404
    for no such study and for another owner's."""
    session = get_session()
    owner = require_owner(session)
    study = session.get(Study, study_id)
    if study is None or not (owner.is_admin or study.owner_key_id == owner.key_id):
        raise NotFound(f"no study {study_id!r}")
    return study, owner


def join_link(study: Study) -> str:
    prolific = "&".join(f"{p}={{{{%{p}%}}}}" for p in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"))
    return f"{base_url()}/join/study/{study.id}?{prolific}"


def study_response(study: Study, detail: bool) -> r.StudyDetail | r.StudySummary:
    session = get_session()
    campaigns = studies.campaigns_of(session, study.id)
    closed = dict(
        session.execute(
            select(Round.campaign_id, func.count())
            .join(Campaign, Campaign.id == Round.campaign_id)
            .where(Campaign.study_id == study.id, Round.status == RoundStatus.CLOSED)
            .group_by(Round.campaign_id)
        ).all()
    )
    ranked = dict(
        session.execute(
            select(Round.campaign_id, func.count(Ranking.id))
            .join(Ranking, Ranking.round_id == Round.id)
            .join(Campaign, Campaign.id == Round.campaign_id)
            .where(Campaign.study_id == study.id)
            .group_by(Round.campaign_id)
        ).all()
    )
    workers = session.scalar(
        select(func.count()).select_from(Annotator).where(Annotator.study_id == study.id)
    )
    by_status: dict[str, int] = {}
    for campaign in campaigns:
        by_status[campaign.status] = by_status.get(campaign.status, 0) + 1
    summary = r.StudySummary(
        id=study.id,
        name=study.name,
        status=CampaignStatus(study_progress.status_of(session, study)),
        created_at=iso(study.created_at),
        finished_at=iso(study.finished_at),
        prompts=len(campaigns),
        campaigns_by_status=by_status,
        rounds_closed=sum(closed.values()),
        rankings=sum(ranked.values()),
        workers=workers or 0,
        link=join_link(study),
        recruit=study.recruit,
        recruit_cap=study.recruit_cap,
        tasks_per_worker=study.tasks_per_worker,
        completion_code=study.completion_code,
        completion_url=study.completion_url,
        pay_per_hour=study.pay_per_hour,
        settings=study.settings,
    )
    if not detail:
        return summary
    latest = _latest_rounds(study.id)
    best = _best_thumbs(study.id)
    each = verdicts.study_verdicts(session, [c.id for c in campaigns])
    pooled = pool(each.values())
    return r.StudyDetail(
        **dict(summary),
        verdict=r.StudyVerdict(
            **pooled.to_dict(),
            **spread(each.values()).to_dict(),
            summary=pooled.sentence(),
        ),
        costs=r.StudyCosts(**dataclasses.asdict(study_progress.costs(session, study))),
        campaigns=[
            r.StudyCampaign(
                id=c.id,
                prompt=c.prompt,
                status=c.status,
                rounds_closed=closed.get(c.id, 0),
                rankings=ranked.get(c.id, 0),
                current_round=latest[c.id][0] if c.id in latest else None,
                current_round_status=latest[c.id][1] if c.id in latest else None,
                best_image_url=object_url(best.get(c.id)),
                verdict=r.CampaignVerdict(
                    **{k: each[c.id].to_dict()[k] for k in ("share", "low", "high", "n")}
                ),
            )
            for c in campaigns
        ],
    )


def _latest_rounds(study_id: str) -> dict[str, tuple[int, str]]:
    """Each campaign's latest round: its number and status."""
    newest = (
        select(Round.campaign_id, func.max(Round.number).label("number"))
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Campaign.study_id == study_id)
        .group_by(Round.campaign_id)
        .subquery()
    )
    rows = get_session().execute(
        select(Round.campaign_id, Round.number, Round.status).join(
            newest, (newest.c.campaign_id == Round.campaign_id) & (newest.c.number == Round.number)
        )
    )
    return {campaign_id: (number, status) for campaign_id, number, status in rows}


def _best_thumbs(study_id: str) -> dict[str, str]:
    """Each campaign's current best (the latest round rendered with one), as a thumbnail key."""
    newest = (
        select(Round.campaign_id, func.max(Round.number).label("number"))
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Campaign.study_id == study_id, Round.best_key.is_not(None))
        .group_by(Round.campaign_id)
        .subquery()
    )
    rows = get_session().execute(
        select(Round.campaign_id, func.coalesce(Round.best_thumb_key, Round.best_key)).join(
            newest, (newest.c.campaign_id == Round.campaign_id) & (newest.c.number == Round.number)
        )
    )
    return {campaign_id: key for campaign_id, key in rows}
