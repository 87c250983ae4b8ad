"""Annotator endpoints: fetch the next task, submit a ranking.

The ranking is committed before anything else happens with it; only then may the round close
(quorum) and the next render be sent.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service import rounds
from service.api.common import iso, json_body, object_url
from service.auth import require_annotator
from service.db import get_session
from service.models import Campaign
from service.schemas import RankingSubmit, validate
from service.tasks import after_ranking

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")


@bp.get("/next")
def next_task():
    session = get_session()
    annotator = require_annotator(session)
    leased = rounds.lease(session, annotator)
    if leased is None:
        return Response(status=204)
    assignment, round_ = leased
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    settings = campaign.settings
    images = rounds.display_order(annotator.id, round_)
    return jsonify(
        {
            "task_id": assignment.id,
            "campaign_id": campaign.id,
            "round": round_.number,
            "k": settings.get("k"),
            "allow_ties": bool(settings.get("allow_ties")),
            "expires_at": iso(assignment.expires_at),
            "prompt": campaign.prompt,
            "images": [
                {
                    "id": image.id,
                    "url": object_url(image.key),
                    "thumb_url": object_url(image.thumb_key or image.key),
                    "alt": f"candidate image {n + 1} of {len(images)}",
                }
                for n, image in enumerate(images)
            ],
        }
    )


@bp.post("/<task_id>/ranking")
def submit_ranking(task_id: str):
    session = get_session()
    annotator = require_annotator(session)
    body: RankingSubmit = validate(RankingSubmit, json_body())
    ranking = rounds.submit(session, annotator, task_id, body.order)
    round_id = ranking.round_id
    session.close()
    after_ranking(round_id)
    return jsonify(
        {
            "ranking_id": ranking.id,
            "task_id": task_id,
            "late": ranking.late,
            "attention_passed": ranking.attention_passed,
        }
    ), 201
