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
    assignment, round_, campaign = leased
    settings = campaign.settings
    images = rounds.display_order(annotator.id, round_, rounds.round_images(session, round_))
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
    submitted = rounds.submit(session, annotator, task_id, body.order)
    session.close()
    if submitted.quorum_reached:
        after_ranking(submitted.round_id)
    return jsonify(
        {
            "ranking_id": submitted.ranking_id,
            "task_id": task_id,
            "late": submitted.late,
            "attention_passed": submitted.attention_passed,
        }
    ), 201
