"""An annotator's own progress and completion code (``GET /api/me``): the code, with the
owner's completion URL, sends a crowd participant back to the platform; without one, ``waiting``
says what a page with no task should tell them.
"""

from __future__ import annotations

from typing import cast

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.contracts import CAMPAIGN_CONCLUDED, CAMPAIGN_ENDED, CampaignStatus, RoundStatus
from service import study_progress
from service.api import annotator_responses
from service.api.responses import json_response, no_store
from service.auth import require_annotator
from service.crediting import code_withheld, completion_code
from service.db import get_session
from service.models import Annotator, Campaign, Round
from service.routing import ok, operation

bp = Blueprint("me", __name__)


@operation(
    bp,
    "GET",
    "/api/me",
    summary="The annotator's progress and completion code",
    auth="annotator",
    responses=ok(annotator_responses.Me),
)
def me():
    session = get_session()
    annotator = require_annotator(session)
    if annotator.study_id is not None:
        return no_store(json_response(_study_me(session, annotator)))
    campaign = session.get(Campaign, annotator.campaign_id) if annotator.campaign_id else None
    quota = campaign.config.tasks_per_annotator if campaign else None
    code = completion_code(session, annotator, campaign)
    # The attention policy: a participant over it is told so plainly, not left waiting for a code.
    failed = code is None and campaign is not None and code_withheld(campaign.config, annotator)
    done = campaign is not None and (
        (campaign.status in CAMPAIGN_CONCLUDED and annotator.tasks_done > 0)
        or (quota is not None and annotator.tasks_done >= quota)
    )
    return no_store(
        json_response(
            annotator_responses.Me(
                annotator_id=annotator.id,
                campaign_id=annotator.campaign_id,
                tasks_done=annotator.tasks_done,
                tasks_quota=quota,
                completion_code=code,
                completion_url=campaign.config.completion_url if code and campaign else None,
                attention_failed=failed,
                completion_withheld_reason="attention_checks" if failed and done else None,
                waiting=_waiting(session, annotator, campaign, quota),
            )
        )
    )


def _study_me(session: Session, annotator: Annotator) -> annotator_responses.Me:
    """``GET /api/me`` of a study's worker: the study's quota, code and status."""
    progress = study_progress.worker_progress(session, annotator)
    withheld = progress.attention_failed and progress.done
    return annotator_responses.Me(
        annotator_id=annotator.id,
        campaign_id=None,
        tasks_done=annotator.tasks_done,
        tasks_quota=progress.quota,
        completion_code=progress.completion_code,
        completion_url=progress.completion_url,
        attention_failed=progress.attention_failed,
        completion_withheld_reason="attention_checks" if withheld else None,
        waiting=annotator_responses.Waiting(
            reason=cast(annotator_responses.WaitingReason, progress.waiting),
            rankings_needed=None,
            render_estimate_s=None,
        ),
    )


def _waiting(
    session: Session, annotator: Annotator, campaign: Campaign | None, quota: int | None
) -> annotator_responses.Waiting:
    """Which case a page without a task is in (``GET /api/me``'s ``waiting``)."""

    def said(
        reason: annotator_responses.WaitingReason,
        needed: int | None = None,
        estimate: float | None = None,
    ) -> annotator_responses.Waiting:
        return annotator_responses.Waiting(
            reason=reason, rankings_needed=needed, render_estimate_s=estimate
        )

    if campaign is None:
        return said("none_open")  # a pool annotator: whichever campaign opens a round next
    if campaign.status in CAMPAIGN_ENDED:
        return said("finished")
    if campaign.status in (CampaignStatus.DRAFT, CampaignStatus.PAUSED):
        return said("not_started" if campaign.status == CampaignStatus.DRAFT else "paused")
    if quota is not None and annotator.tasks_done >= quota:
        return said("quota_reached")
    latest = session.scalars(
        select(Round).where(Round.campaign_id == campaign.id).order_by(Round.number.desc()).limit(2)
    ).all()
    if latest and latest[0].status == RoundStatus.OPEN:
        quorum = campaign.config.annotators_per_round
        return said("others_ranking", needed=max(0, quorum - latest[0].n_rankings))
    if latest and latest[0].status in (RoundStatus.RENDERING, RoundStatus.CLOSED):
        rendered = [r.render_seconds for r in latest if r.render_seconds is not None]
        return said("rendering", estimate=rendered[0] if rendered else None)
    return said("none_open")
