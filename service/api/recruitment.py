"""Crowd recruitment: the owner's recruitment link and a participant's way in (``/join``); where
the participant stands once in, and the completion code that sends them back to the platform, is
``GET /api/me`` (:mod:`service.api.me`).

``/join/<campaign_id>`` is the link for crowd platforms, open only when the owner created the
campaign with ``recruit: true``. It needs the platform's participant id (Prolific
``PROLIFIC_PID``, MTurk ``workerId``, or ``participant_id``) and creates that participant's
annotator on the first visit (up to the campaign's ``recruit_cap``), then redirects to the task
page with the token in the URL fragment, which the page keeps in the browser.

A second visit with a participant id that already joined takes nothing from anybody: the
holder's token stays valid and no new one is made (knowing somebody's participant id must not
be enough to become them). It redirects to ``/task#rejoin=<campaign_id>``, where the page
continues with the token this browser got on the first visit, or says to continue where the
study was first opened. Joins of one new participant at the same moment (a double click, a
platform that opens the link twice) make one annotator: the first is answered with its token,
the others as a second visit. A platform's placeholder left unfilled (``{{%PROLIFIC_PID%}}``: a
study link Prolific did not fill in) is no participant id and is refused. From an MTurk HIT (ExternalQuestion) the redirect also carries the
assignment and MTurk's ``turkSubmitTo``, for the task page to post the finished assignment back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WerkzeugResponse

from rankloop.core import mturk
from rankloop.core.contracts import (
    CAMPAIGN_ENDED,
)
from rankloop.core.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, RankloopError
from service import join_pages
from service.api import responses
from service.api.common import base_url, owned_campaign
from service.api.responses import json_response, no_store
from service.auth import hash_token, new_token
from service.config import mturk_stand_in
from service.db import get_session
from service.models import Annotator, Campaign, Study
from service.routing import Reply, ok, operation
from service.transitions import audit

bp = Blueprint("recruitment", __name__)

PARTICIPANT_PARAMS = ("PROLIFIC_PID", "workerId", "participant_id")
# What else the platform says about the visit, kept with a new participant (under these names):
# Prolific's study and session, MTurk's assignment and HIT, to match payments with rankings.
CONTEXT_PARAMS = {
    "STUDY_ID": "study_id",
    "SESSION_ID": "session_id",
    "assignmentId": "assignment_id",
    "hitId": "hit_id",
    "turkSubmitTo": "turk_submit_to",  # kept only when it is MTurk's (rankloop.core.mturk)
}
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"  # MTurk's assignmentId before the HIT is accepted
# A placeholder the platform did not fill in: {{%PROLIFIC_PID%}}, %PROLIFIC_PID%, ${workerId}.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\$\{|^%[A-Za-z_]+%$")


@operation(
    bp,
    "GET",
    "/api/campaigns/<campaign_id>/recruit",
    summary="The recruitment link for crowd platforms and its cap",
    auth="owner",
    responses=ok(responses.RecruitLink),
)
def recruit_link(campaign_id: str):
    campaign, _ = owned_campaign(campaign_id)
    counts = dict(
        get_session()
        .execute(
            select(Annotator.participant_id.is_not(None), func.count())
            .where(Annotator.campaign_id == campaign.id)
            .group_by(Annotator.participant_id.is_not(None))
        )
        .all()
    )
    prolific = "&".join(f"{p}={{{{%{p}%}}}}" for p in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"))
    # It carries the completion code, which a crowd platform takes as proof of work: not cached.
    return no_store(
        json_response(
            responses.RecruitLink(
                enabled=recruiting(campaign),
                link=f"{base_url()}/join/{campaign.id}?{prolific}",
                # MTurk's ExternalQuestion appends ?workerId=...&assignmentId=... itself.
                mturk_link=f"{base_url()}/join/{campaign.id}",
                cap=campaign.config.recruit_cap,
                joined=counts.get(True, 0),
                owner_links=counts.get(False, 0),
                completion_code=campaign.completion_code,
                completion_url=campaign.config.completion_url,
            )
        )
    )


def recruiting(campaign: Campaign) -> bool:
    """Whether ``/join`` admits participants: only when the owner turned it on."""
    return campaign.config.recruit


def refuse(reason: join_pages.Reason, error: RankloopError) -> Response:
    """A refusal: a page in the worker's language for a browser, the JSON error otherwise."""
    if join_pages.wants_page():
        return join_pages.join_page(reason, error.http_status)
    raise error


def participant_context() -> dict[str, str] | None:
    context = {
        name: value.strip()[:128]
        for param, name in CONTEXT_PARAMS.items()
        if (value := request.args.get(param))
        and value.strip()
        and not unfilled_placeholder(value.strip())
    }
    if "turk_submit_to" in context:
        submit_to = mturk.submit_origin(context.pop("turk_submit_to"), mturk_stand_in())
        context.update({"turk_submit_to": submit_to} if submit_to else {})
    return context or None


def unfilled_placeholder(value: str) -> bool:
    """Whether ``value`` is a crowd platform's placeholder left as it was, not a participant's
    id: Prolific's ``{{%PROLIFIC_PID%}}`` (a study link copied without Prolific filling it in),
    the same without its braces, a template's ``${workerId}``, or MTurk's preview marker."""
    return value == MTURK_PREVIEW or bool(_PLACEHOLDER.search(value))


@dataclass(frozen=True)
class JoinTarget:
    """What a recruitment link joins: a campaign (``/join/<id>``) or a study
    (:mod:`service.api.study_join`), and the refusal when its ``cap`` is reached."""

    row: type[Campaign] | type[Study]
    id: str
    scope: Literal["campaign_id", "study_id"]  # the annotator's column (and the audit's key)
    cap: int
    full: str
    fragment: str = ""  # more for the task page's fragment, after the new token


def enrol(session: Session, target: JoinTarget, participant: str) -> WerkzeugResponse:
    """The participant's annotator on ``target``: made on the first visit (up to its cap of
    recruited participants; links made by hand are apart) and sent to the task page with its
    token; a second visit takes nothing from anybody (:func:`_rejoin`)."""
    known = _participant_annotator(session, target, participant)
    if known is not None:
        return _rejoin(session, target, known)
    # The target's row is locked first, so joins at the same moment count one after another
    # and never take it past its cap (PostgreSQL; SQLite has one writer anyway).
    session.execute(select(target.row.id).where(target.row.id == target.id).with_for_update())
    # The same participant may have joined while this request waited for the lock (a double
    # click, a platform that opens the link twice): read again, under the lock.
    known = _participant_annotator(session, target, participant)
    if known is not None:
        return _rejoin(session, target, known)
    joined = session.scalar(
        select(func.count())
        .select_from(Annotator)
        .where(getattr(Annotator, target.scope) == target.id, Annotator.participant_id.is_not(None))
    )
    if (joined or 0) >= target.cap:
        return refuse("full", Conflict(target.full))
    token = new_token()
    context = participant_context()
    scope: dict[str, Any] = {target.scope: target.id}
    annotator = Annotator(
        participant_id=participant,
        participant_context=context,
        token_hash=hash_token(token),
        **scope,
    )
    try:
        # Under a savepoint: when another join of the same participant won the unique
        # constraint after all (no lock held it back), only this insert is undone, and the
        # answer is the one a second visit gets: the first join's annotator, never a 500.
        with session.begin_nested():
            session.add(annotator)
            session.flush()
    except IntegrityError:
        known = _participant_annotator(session, target, participant)
        if known is None:
            raise
        return _rejoin(session, target, known)
    audit(
        session,
        "annotator_joined",
        actor=annotator.id,
        participant=participant,
        context=context,
        **scope,
    )
    session.commit()
    return to_task_page(f"token={token}{target.fragment}")


def _participant_annotator(session: Session, target: JoinTarget, participant: str) -> str | None:
    return session.scalar(
        select(Annotator.id).where(
            getattr(Annotator, target.scope) == target.id, Annotator.participant_id == participant
        )
    )


def _rejoin(session: Session, target: JoinTarget, known: str) -> WerkzeugResponse:
    """A participant who already joined: never a new token; whoever holds the first one keeps
    it, and their task."""
    scope: dict[str, Any] = {target.scope: target.id}
    audit(session, "annotator_rejoin_refused", actor=known, **scope)
    session.commit()
    return to_task_page(f"rejoin={target.id}")


def to_task_page(fragment: str) -> WerkzeugResponse:
    """The redirect to the task page, with MTurk's assignment when it came from an MTurk HIT:
    the page posts it back to MTurk when the worker is done (task page, notices.js)."""
    assignment = request.args.get("assignmentId", "").strip()[:128]
    submit_to = mturk.submit_origin(request.args.get("turkSubmitTo"), mturk_stand_in())
    if assignment and assignment != MTURK_PREVIEW and submit_to:
        fragment += "&" + urlencode({"assignmentId": assignment, "turkSubmitTo": submit_to})
    # url_for keeps the mount prefix (SCRIPT_NAME) when the app is served under a path.
    response = no_store(redirect(f"{url_for('ui.task_page')}#{fragment}", code=302))
    return join_pages.framed_by_mturk(response)


def visiting_participant() -> str | Response:
    """The participant id a join link was opened with, else the answer to give instead:
    MTurk's preview page, or the refusal of a visit with no participant id or with the
    platform's placeholder (no id, no identity)."""
    if request.args.get("assignmentId") == MTURK_PREVIEW:
        # MTurk shows the HIT before a worker accepts it: no worker id yet, nobody to admit.
        return join_pages.join_page("preview", 200)
    participant = next((request.args[p] for p in PARTICIPANT_PARAMS if request.args.get(p)), None)
    if not participant or not participant.strip():
        return refuse(
            "no_participant",
            InvalidInput(
                "this link needs your participant id (PROLIFIC_PID or workerId): open it from "
                "the study page of your crowd platform"
            ),
        )
    participant = participant.strip()[:128]
    if unfilled_placeholder(participant):
        return refuse(
            "placeholder",
            InvalidInput(
                f"the participant id {participant[:40]!r} is the platform's placeholder, not an "
                "id: the study's link must let the platform fill it in (open the study from its "
                "page on your platform)"
            ),
        )
    return participant


@operation(
    bp,
    "GET",
    "/join/<campaign_id>",
    summary=(
        "Recruitment entry (when the campaign's recruit setting is on; a participant id is "
        "required): creates the participant's annotator and redirects to /task#token=...; a "
        "participant who already joined is sent to /task#rejoin=<campaign_id>, and keeps "
        "their token. Prolific's STUDY_ID and SESSION_ID and MTurk's assignmentId, hitId and "
        "turkSubmitTo (only when it is MTurk's) are kept with a new participant; with an "
        "assignmentId and MTurk's turkSubmitTo the redirect's fragment carries both, for the "
        "task page to post the finished assignment to MTurk. Joins of one new participant at the "
        "same moment make one annotator (the others are answered as a second visit); a "
        "placeholder the platform did not fill in ({{%PROLIFIC_PID%}}) is refused (400). A refusal (4xx, the join rate "
        "limit's 429 too) is a page in the worker's language (Accept-Language) for a client "
        "that prefers text/html, the JSON error otherwise"
    ),
    query={name: () for name in (*PARTICIPANT_PARAMS, *CONTEXT_PARAMS)},
    responses={
        200: Reply(
            "MTurk's preview (assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE): a page that says to "
            "accept the HIT; nobody joins",
            media=("text/html",),
        ),
        302: Reply("Redirect to the task page (Cache-Control: no-store)", media=()),
    },
)
def join(campaign_id: str):
    session = get_session()
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return refuse("unknown", NotFound(f"no campaign {campaign_id!r}"))
    if campaign.status in CAMPAIGN_ENDED:
        return refuse(
            "ended", Gone(f"this campaign is {campaign.status}; thank you for your interest")
        )
    if not recruiting(campaign):
        return refuse(
            "not_recruiting",
            Forbidden("this campaign does not recruit through a link: ask its organiser"),
        )
    participant = visiting_participant()
    if not isinstance(participant, str):
        return participant
    full = "this campaign has all the annotators it needs; thank you"
    target = JoinTarget(Campaign, campaign.id, "campaign_id", campaign.config.recruit_cap, full)
    return enrol(session, target, participant)
