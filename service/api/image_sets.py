"""Items of an image-set campaign uploaded: ``POST /api/campaigns/<id>/items`` with a zip (item
folders, a table and the images it names, or a Hugging Face datasets folder), a Parquet file
(images as bytes), or a CSV or JSON lines table of one row per item or per image
(:mod:`service.image_sets.reading`). The body is streamed to a temporary file (memory stays
flat), then imported all or nothing, or with the malformed items skipped and reported
(``?on_error=skip``) (:func:`service.image_sets.importer.import_items`); ``?dry_run=true``
checks it all and shows the first items, keeping nothing (:mod:`service.image_sets.preview`).
``GET /api/campaigns/<id>/items`` lists the items imported, a page at a time.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from flask import Blueprint, request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from rankloop.core.contracts import ImageRole, RoundStatus
from rankloop.core.errors import InvalidInput
from rankloop.core.image_sets import (
    MAX_SKIPS_REPORTED,
    MAX_UPLOAD_BYTES,
    ON_ERROR,
    PREVIEW_ITEMS,
    UPLOAD_TYPES,
    OnError,
)
from service.api.common import PAGE_QUERY, object_url, owned_campaign, page_args, store
from service.api.responses import json_response, no_store
from service.db import get_session
from service.image_sets.importer import import_items
from service.image_sets.preview import DryStore, preview_items
from service.image_sets.reading import items_of
from service.models import Round
from service.routing import Reply, ok, operation
from service.transitions import owner_actor

bp = Blueprint("image_sets", __name__)
CHUNK = 1 << 20


class SkippedRow(BaseModel):
    line: int = Field(
        description="the row (a table's line, a dataset's row, an item folder's place)"
    )
    item_id: str
    reason: str


class PreviewImage(BaseModel):
    model: str | None
    src: str = Field(description="a small WebP thumbnail as a data: URL")


class PreviewItem(BaseModel):
    line: int
    item_id: str
    prompt: str
    images: list[PreviewImage]


class ItemsImported(BaseModel):
    campaign_id: str
    items: int = Field(description="items imported (with dry_run: that would be)")
    images: int
    stored: int
    reused: int
    rounds: int
    skipped: int = Field(0, description="malformed items left out (on_error=skip)")
    skipped_rows: list[SkippedRow] = Field(
        default_factory=list,
        description=f"the first {MAX_SKIPS_REPORTED} items left out, and why",
    )
    dry_run: bool = False
    preview: list[PreviewItem] = Field(
        default_factory=list,
        description=f"with dry_run: the first {PREVIEW_ITEMS} good items, images inline",
    )


class ItemImage(BaseModel):
    url: str
    thumb_url: str
    model: str | None
    role: ImageRole


class Item(BaseModel):
    number: int = Field(description="the item's round")
    item_id: str | None
    prompt: str
    status: RoundStatus
    images: list[ItemImage]


class ItemList(BaseModel):
    items: list[Item]
    next_offset: int | None


@operation(
    bp,
    "POST",
    "/api/campaigns/<campaign_id>/items",
    summary=(
        "Import items into a draft image-set campaign (kind image_set): the body is a file, by "
        f"Content-Type ({', '.join(UPLOAD_TYPES)}; a zip holds item folders, a table and its "
        "images, or a Hugging Face datasets folder); each item becomes one round of its 2-16 "
        "images. All or nothing (a malformed item refuses the import with its line), or with "
        "on_error=skip the good items are imported and the malformed ones reported "
        "(skipped_rows). dry_run=true checks everything, keeps nothing, and returns the first "
        "items with their images inline (200)"
    ),
    auth="owner",
    upload=tuple(UPLOAD_TYPES),
    query={"on_error": ON_ERROR, "dry_run": ("true", "false")},
    responses={
        201: Reply("Imported", ItemsImported),
        200: Reply("Checked (dry_run), nothing kept", ItemsImported),
    },
)
def import_items_route(campaign_id: str):
    campaign, owner = owned_campaign(campaign_id)
    on_error: OnError = "skip" if _choice("on_error", ON_ERROR, "abort") == "skip" else "abort"
    dry_run = _choice("dry_run", ("true", "false"), "false") == "true"
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
        target = DryStore(store()) if dry_run else store()
        try:
            report = import_items(session, target, campaign.id, items_of(path),
                                  actor=owner_actor(owner.key_id),
                                  on_error=on_error)  # fmt: skip
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        preview = [dataclasses.asdict(p) for p in preview_items(items_of(path))] if dry_run else []
    body = ItemsImported.model_validate(
        {**dataclasses.asdict(report), "dry_run": dry_run, "preview": preview}
    )
    return no_store(json_response(body, 200 if dry_run else 201))


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = request.args.get(name, default)
    if value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}, got {value[:20]!r}")
    return value


@operation(
    bp,
    "GET",
    "/api/campaigns/<campaign_id>/items",
    summary=(
        "The items of an image-set campaign in import order, a page at a time: each one's "
        "prompt, status and images (thumbnails and full size, model names)"
    ),
    auth="owner",
    query=PAGE_QUERY,
    responses=ok(ItemList),
)
def list_items(campaign_id: str):
    campaign, _ = owned_campaign(campaign_id)
    limit, offset = page_args()
    rounds = (
        get_session()
        .scalars(
            select(Round)
            .where(Round.campaign_id == campaign.id)
            .order_by(Round.number)
            .options(selectinload(Round.images))
            .limit(limit + 1)
            .offset(offset)
        )
        .all()
    )
    items = [
        Item(number=r.number, item_id=r.item_id, prompt=r.prompt or "",
             status=RoundStatus(r.status),
             images=[ItemImage(url=object_url(i.key), thumb_url=object_url(i.thumb_key or i.key),
                               model=i.model, role=ImageRole(i.role))
                     for i in sorted(r.images, key=lambda i: i.position)])
        for r in rounds[:limit]
    ]  # fmt: skip
    more = offset + limit if len(rounds) > limit else None
    return no_store(json_response(ItemList(items=items, next_offset=more)))
