"""Exports of the collected rankings, and the images of rounds.

Images: when the store presigns (S3) the API hands out presigned URLs and this route is not
used; otherwise ``/objects/<key>`` streams from the local store. Only round images and
thumbnails are served (never optimizer states or manifests); keys contain the campaign's
random 128-bit id, so an image URL cannot be guessed, only shared. There is no listing, and
any key with ``..``, a leading ``/`` or other characters is refused before the store sees it.
"""

from __future__ import annotations

import json
import re

from flask import Blueprint, Response, request
from sqlalchemy import select

from rankloop.core.errors import InvalidInput, NotFound
from service.api import responses
from service.api.campaigns import owned_campaign
from service.api.common import iso, store
from service.db import get_session
from service.models import Image, Ranking

bp = Blueprint("exports", __name__)

OBJECT_KEY = re.compile(
    r"^campaigns/[0-9a-f]{32}/rounds/\d{4,}/((images|thumbs)/[\w.-]+\.(png|webp|jpg)|best\.png)$"
)
CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}


@bp.get("/objects/<path:key>")
def get_object(key: str):
    if not OBJECT_KEY.match(key) or ".." in key:
        raise NotFound("no such image")
    data = store().get(key)
    response = Response(data, mimetype=CONTENT_TYPES[key.rsplit(".", 1)[1]])
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


@bp.get("/api/campaigns/<campaign_id>/export")
def export(campaign_id: str):
    campaign, _ = owned_campaign(campaign_id)
    if request.args.get("format", "jsonl") != "jsonl":
        raise InvalidInput("unknown format: use format=jsonl")
    session = get_session()
    rounds_by_id = {r.id: r for r in campaign.rounds}
    images = {
        image.id: image
        for image in session.scalars(select(Image).where(Image.round_id.in_(list(rounds_by_id))))
    }

    def lines():
        query = select(Ranking).where(Ranking.round_id.in_(list(rounds_by_id))).order_by(Ranking.id)
        for ranking in session.scalars(query):
            round_ = rounds_by_id[ranking.round_id]
            shown = [images[i.id] for i in round_.images]
            record = responses.ExportRecord(
                ranking_id=ranking.id,
                campaign_id=campaign.id,
                round=round_.number,
                round_kind=round_.kind,
                annotator_id=ranking.annotator_id,
                submitted_at=iso(ranking.created_at),
                late=ranking.late,
                attention_passed=ranking.attention_passed,
                order=ranking.order,
                order_keys=[_keys(o, images) for o in ranking.order],
                images=[
                    responses.ExportImage(id=i.id, key=i.key, index=i.index, role=i.role)
                    for i in shown
                ],
                prompt=campaign.prompt,
            )
            yield json.dumps(record.model_dump(mode="json")) + "\n"

    # Built before the response: a SQLite read transaction must not outlive the request.
    body = "".join(lines())
    session.close()
    response = Response(body, mimetype="application/x-ndjson")
    response.headers["Content-Disposition"] = f'attachment; filename="rankloop-{campaign.id}.jsonl"'
    return response


def _keys(element, images):
    if isinstance(element, list):
        return [images[i].key for i in element]
    return images[element].key
