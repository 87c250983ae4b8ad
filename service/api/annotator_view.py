"""Owner endpoint for one annotator of a campaign: their progress, access, and every ranking
they gave it with the time it took and their reliability weight in that round's consensus."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import and_, or_, select

from rankloop.core.errors import NotFound
from service.api import annotator_responses
from service.api.annotators import is_pool
from service.api.common import iso, owned_campaign, reliability_weights
from service.api.responses import json_response, no_store
from service.crediting import completion_withheld
from service.db import get_session
from service.models import Annotator, Assignment, Consensus, Ranking, Round
from service.routing import ok, operation

bp = Blueprint("annotator_view", __name__, url_prefix="/api/campaigns")


@operation(
    bp,
    "GET",
    "/<campaign_id>/annotators/<annotator_id>",
    summary=(
        "One annotator: progress, quota, completion code, access, and every ranking with its "
        "time on task and their weight in that round's consensus"
    ),
    auth="owner",
    responses=ok(annotator_responses.AnnotatorDetail),
)
def show_annotator(campaign_id: str, annotator_id: str):
    campaign, _ = owned_campaign(campaign_id)
    session = get_session()
    rows = session.execute(
        select(Ranking, Round.number, Assignment.created_at, Consensus.weights)
        .join(Round, Round.id == Ranking.round_id)
        .join(Assignment, Assignment.id == Ranking.assignment_id)
        .outerjoin(Consensus, Consensus.round_id == Ranking.round_id)
        .where(Round.campaign_id == campaign.id, Ranking.annotator_id == annotator_id)
        .order_by(Ranking.id)
    ).all()
    annotator = session.scalar(
        select(Annotator).where(
            Annotator.id == annotator_id,
            # The campaign's own annotators, pool annotators (who may work on any campaign:
            # their rankings here, if any; pool ids are random, so this reveals nothing) and
            # the workers of the campaign's study.
            or_(
                Annotator.campaign_id == campaign.id,
                and_(Annotator.campaign_id.is_(None), Annotator.study_id.is_(None)),
                and_(Annotator.study_id.is_not(None), Annotator.study_id == campaign.study_id),
            ),
        )
    )
    if annotator is None:
        raise NotFound(f"campaign {campaign.id!r} has no annotator {annotator_id!r}")
    return no_store(
        json_response(
            annotator_responses.AnnotatorDetail(
                id=annotator.id,
                participant_id=annotator.participant_id,
                participant_context=annotator.participant_context,
                pool=is_pool(annotator),
                study_id=annotator.study_id,
                tasks_done=len(rows),
                tasks_quota=campaign.config.tasks_per_annotator,
                completion_code=annotator.completion_code,
                completion_withheld=completion_withheld(campaign, annotator),
                created_at=iso(annotator.created_at),
                last_seen=iso(annotator.last_seen),
                revoked_at=iso(annotator.revoked_at),
                excluded=annotator.excluded,
                weight=reliability_weights(campaign).get(annotator.id, annotator.weight),
                rankings=[
                    annotator_responses.AnnotatorRanking(
                        round=number,
                        order=ranking.order,
                        attention_passed=ranking.attention_passed,
                        late=ranking.late,
                        created_at=iso(ranking.created_at),
                        seconds=max(0.0, (ranking.created_at - leased).total_seconds()),
                        weight=(weights or {}).get(annotator.id),
                    )
                    for ranking, number, leased, weights in rows
                ],
            )
        )
    )
