"""Annotator endpoints: fetch the next task, report its images shown, submit a ranking.

The ranking is committed before anything else happens with it; only then may the round close
(quorum) and the next render be sent. Both endpoints are the coordinator's hot path: they run
the lean statements of :func:`service.leasing.lease_by_token` and
:func:`service.fast_submission.submit_by_token` (no ORM objects; the annotator is found by its
token hash inside the same statement that finds its lease or claims its task).
"""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy import select

from rankloop.core.campaign_settings import IMAGE_SET
from rankloop.core.errors import InvalidInput
from service.api import annotator_responses
from service.api.common import iso, json_body, object_url
from service.api.responses import json_response
from service.auth import bearer_token, hash_token, unknown_token
from service.caches import round_images, round_prompt
from service.closing import after_ranking
from service.db import get_session
from service.fast_submission import submit_by_token
from service.leasing import credit_loading, lease_by_token
from service.models import Annotator
from service.ranking_rules import display_order
from service.routing import Reply, ok, operation
from service.schemas import RankingSubmit, TaskShown, validate

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")


@operation(
    bp,
    "GET",
    "/next",
    summary="The next task (a lease), shuffled for this annotator",
    auth="annotator",
    responses={
        **ok(annotator_responses.Task),
        204: Reply("Nothing open for this annotator now", media=()),
    },
)
def next_task():
    session = get_session()
    lease = lease_by_token(session, hash_token(bearer_token()))
    if lease is None:
        return Response(status=204)
    campaign, round_ = lease.campaign, lease.round
    settings = campaign.config
    images = display_order(lease.annotator_id, round_.id, round_images(session, round_))
    return json_response(
        annotator_responses.Task(
            task_id=lease.task_id,
            campaign_id=campaign.id,
            round=round_.number,
            k=settings.k,
            allow_ties=settings.allow_ties,
            expires_at=iso(lease.expires_at),
            prompt=round_prompt(session, round_) if settings.kind == IMAGE_SET else campaign.prompt,
            images=[
                annotator_responses.TaskImage(
                    id=image.id,
                    url=object_url(image.key),
                    thumb_url=object_url(image.thumb_key or image.key),
                    alt=f"candidate image {n + 1} of {len(images)}",
                )
                for n, image in enumerate(images)
            ],
        )
    )


@operation(
    bp,
    "POST",
    "/<task_id>/ranking",
    summary=(
        "Submit a ranking (image ids, best first; a list is a tie). Retry-safe: the same order "
        "sent again for the same task answers 201 with the ranking stored first (nothing new is "
        "stored); another order answers 409"
    ),
    auth="annotator",
    body=RankingSubmit,
    responses={
        201: Reply("Stored, or the first one for a repeat", annotator_responses.RankingAccepted)
    },
)
def submit_ranking(task_id: str):
    token_hash = hash_token(bearer_token())
    session = get_session()
    try:
        body: RankingSubmit = validate(RankingSubmit, json_body())
    except InvalidInput:
        # An unknown token is told so first, whatever it sent.
        if session.scalar(_annotator_exists(token_hash)) is None:
            raise unknown_token(session, token_hash) from None
        raise
    submitted = submit_by_token(session, token_hash, task_id, body.order)
    session.close()
    if submitted.quorum_reached:
        after_ranking(submitted.round_id)
    accepted = annotator_responses.RankingAccepted(
        ranking_id=submitted.ranking_id,
        task_id=task_id,
        late=submitted.late,
        attention_passed=submitted.attention_passed,
    )
    return json_response(accepted, 201)


@operation(
    bp,
    "POST",
    "/<task_id>/shown",
    summary=(
        "Report that the task's images are on screen and how long they took to load: the "
        "lease is extended by that much, once per lease (at most the time it has run, and "
        "MAX_LOAD_CREDIT_S); a repeat changes nothing"
    ),
    auth="annotator",
    body=TaskShown,
    responses=ok(annotator_responses.TaskShownAck),
)
def task_shown(task_id: str):
    """The page's report that the task's images are on screen, and how long they took: the
    lease is extended by that much, once (:func:`service.leasing.credit_loading`)."""
    token_hash = hash_token(bearer_token())
    session = get_session()
    body: TaskShown = validate(TaskShown, json_body())
    expires_at = credit_loading(session, token_hash, task_id, body.load_s)
    return json_response(
        annotator_responses.TaskShownAck(task_id=task_id, expires_at=iso(expires_at))
    )


def _annotator_exists(token_hash: str):
    return select(Annotator.id).where(Annotator.token_hash == token_hash)
