"""Items of an image-set campaign uploaded: ``POST /api/campaigns/<id>/items`` with a zip (item
folders, or a table and the images it names), a Parquet file (images as bytes), or a CSV or
JSON lines table of one row per item or per image (:mod:`service.image_sets.reading`). The body
is streamed to a temporary file (memory stays flat), then imported all or nothing
(:func:`service.image_sets.importer.import_items`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Blueprint, request
from pydantic import BaseModel

from rankloop.core.errors import InvalidInput
from rankloop.core.image_sets import MAX_UPLOAD_BYTES, UPLOAD_TYPES
from service.api.common import owned_campaign, store
from service.api.responses import json_response, no_store
from service.db import get_session
from service.image_sets.importer import import_items
from service.image_sets.reading import items_of
from service.routing import Reply, operation
from service.transitions import owner_actor

bp = Blueprint("image_sets", __name__)
CHUNK = 1 << 20


class ItemsImported(BaseModel):
    campaign_id: str
    items: int
    images: int
    stored: int
    reused: int
    rounds: int


@operation(
    bp,
    "POST",
    "/api/campaigns/<campaign_id>/items",
    summary=(
        "Import items into a draft image-set campaign (kind image_set), all or nothing: the body "
        f"is a file, by Content-Type ({', '.join(UPLOAD_TYPES)}); each item becomes one round "
        "of its 2-16 images"
    ),
    auth="owner",
    upload=tuple(UPLOAD_TYPES),
    responses={201: Reply("Imported", ItemsImported)},
)
def import_items_route(campaign_id: str):
    campaign, owner = owned_campaign(campaign_id)
    suffix = UPLOAD_TYPES.get(request.mimetype)
    if suffix is None:
        raise InvalidInput(f"Content-Type: send the items as one of {', '.join(UPLOAD_TYPES)}")
    request.max_content_length = MAX_UPLOAD_BYTES  # this route's own limit, not the API's
    session = get_session()
    with tempfile.TemporaryDirectory(prefix="rankloop-items-") as folder:
        path = Path(folder) / f"items{suffix}"
        with path.open("wb") as file:
            while chunk := request.stream.read(CHUNK):
                file.write(chunk)
        if path.stat().st_size == 0:
            raise InvalidInput("the body is empty: send the items file")
        try:
            report = import_items(session, store(), campaign.id, items_of(path),
                                  actor=owner_actor(owner.key_id))  # fmt: skip
            session.commit()
        except BaseException:
            session.rollback()
            raise
    body = ItemsImported(**report.__dict__)
    return no_store(json_response(body, 201))
