"""A study's one recruitment link: ``/join/study/<study_id>?PROLIFIC_PID=...``.

The rules of a campaign's link (:mod:`service.api.recruitment`), for the study as a whole: a
participant id is required (a placeholder the platform did not fill in is none), the first
visit creates the participant's annotator (one per participant and study, up to the study's
``recruit_cap``), and a second visit takes nothing from anybody (``/task#rejoin=<study_id>``).
The study's worker is routed over the study's campaigns (:mod:`service.leasing`), and after
the study's ``tasks_per_worker`` rankings gets the study's completion code.
"""

from __future__ import annotations

from flask import Blueprint

from rankloop.core.contracts import CAMPAIGN_ENDED
from rankloop.core.errors import Forbidden, Gone, NotFound
from service import study_progress
from service.api.recruitment import (
    CONTEXT_PARAMS,
    PARTICIPANT_PARAMS,
    JoinTarget,
    enrol,
    refuse,
    visiting_participant,
)
from service.db import get_session
from service.models import Study
from service.routing import Reply, operation

bp = Blueprint("study_join", __name__)


@operation(
    bp,
    "GET",
    "/join/study/<study_id>",
    summary=(
        "A study's recruitment entry (when its recruit setting is on; a participant id is "
        "required): the rules of /join/<campaign_id> for the study as a whole. Creates the "
        "participant's study worker (up to the study's recruit_cap) and redirects to "
        "/task#token=...&study=<study_id>; a participant who already joined is sent to "
        "/task#rejoin=<study_id> and keeps their token. The worker ranks rounds of any of the "
        "study's campaigns, then gets the study's completion code"
    ),
    query={name: () for name in (*PARTICIPANT_PARAMS, *CONTEXT_PARAMS)},
    responses={
        200: Reply(
            "MTurk's preview (assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE): nobody joins",
            media=("text/html",),
        ),
        302: Reply("Redirect to the task page (Cache-Control: no-store)", media=()),
    },
)
def join_study(study_id: str):
    session = get_session()
    study = session.get(Study, study_id)
    if study is None:
        return refuse("unknown", NotFound(f"no study {study_id!r}"))
    status = study_progress.status_of(session, study)
    if status in CAMPAIGN_ENDED:
        return refuse("ended", Gone(f"this study is {status}; thank you for your interest"))
    if not study.recruit:
        return refuse(
            "not_recruiting",
            Forbidden("this study does not recruit through a link: ask its organiser"),
        )
    participant = visiting_participant()
    if not isinstance(participant, str):
        return participant
    full = "this study has all the participants it needs; thank you"
    target = JoinTarget(Study, study.id, "study_id", study.recruit_cap, full, f"&study={study.id}")
    return enrol(session, target, participant)
