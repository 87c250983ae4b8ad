"""Exports of the collected rankings, and the images of rounds.

Images: when the store presigns (S3) the API hands out presigned URLs and this route is not
used; otherwise ``/objects/<key>`` streams from the local store, without credentials (an
``<img>`` sends none). Only round images and thumbnails are served (never optimizer states or
manifests), and their names are keyed digests (:func:`rankloop.core.storage.image_name`): an
image URL cannot be guessed, even knowing the campaign id, only shared. There is no listing;
any key with ``..``, a leading ``/`` or other characters is refused before the store sees it,
and every refusal is the same 404, which names nothing of the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request, stream_with_context

from rankloop.core.errors import InvalidInput, NotFound
from rankloop.core.image_sets import BLOB_KEY
from service import datasets
from service.api import responses
from service.api.common import base_url, iso, object_url, owned_campaign, store
from service.db import get_session
from service.routing import NDJSON, Reply, operation

bp = Blueprint("exports", __name__)

# best.png: the layout of releases before image_name (their rounds still hold such keys).
OBJECT_KEY = re.compile(
    r"^campaigns/[0-9a-f]{32}/rounds/\d{4,}/((images|thumbs)/[\w-]+\.(png|webp|jpg)|best\.png)$"
)
CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}


@operation(
    bp,
    "GET",
    "/objects/<path:key>",
    summary=(
        "A round image or thumbnail from the local store (S3 stores hand out presigned URLs "
        "instead)"
    ),
    responses={200: Reply("The image", media=tuple(CONTENT_TYPES.values()))},
)
def get_object(key: str):
    if not (OBJECT_KEY.match(key) or BLOB_KEY.match(key)) or ".." in key:
        raise NotFound("no such image")
    try:
        data = store().get(key)
    except (NotFound, InvalidInput):  # missing, or a link out of the store's root
        raise NotFound("no such image") from None
    response = Response(data, mimetype=CONTENT_TYPES[key.rsplit(".", 1)[1]])
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


# The query and replies of an export, a campaign's or a study's.
EXPORT_QUERY = {
    "format": ("jsonl", *(f"{t}.{f}" for t in datasets.TABLES for f in datasets.FORMATS)),
    "images": datasets.IMAGE_MODES,
}
EXPORT_REPLIES = {
    200: Reply(
        "JSON lines (ExportRecord each with format=jsonl), or Parquet",
        responses.ExportRecord,
        (NDJSON, datasets.media_type("parquet")),
    )
}


def export_request() -> tuple[str, str, str, str]:
    """The request's export format, table, file kind and images mode, or InvalidInput."""
    fmt = request.args.get("format", "jsonl")
    table, _, kind = fmt.partition(".")
    if fmt != "jsonl" and (table not in datasets.TABLES or kind not in datasets.FORMATS):
        choices = ", ".join(f"{t}.{f}" for t in datasets.TABLES for f in datasets.FORMATS)
        raise InvalidInput(f"unknown format: use format=jsonl or one of {choices}")
    mode = request.args.get("images", "url")
    if mode not in datasets.IMAGE_MODES or (mode == "embed" and kind != "parquet"):
        raise InvalidInput(
            "images: use url, key, or embed with a Parquet format "
            "(`rankloop export` writes JSON lines with an images/ folder)"
        )
    return fmt, table, kind, mode


@operation(
    bp,
    "GET",
    "/api/campaigns/<campaign_id>/export",
    summary=(
        "Every ranking as JSON lines (format=jsonl), or a dataset table (format=TABLE.FORMAT:"
        " rankings, consensus, pairs in the Pick-a-Pic v2 layout, consensus_pairs; JSON lines"
        " or Parquet, images by url, key or embedded in Parquet)"
    ),
    auth="owner",
    query=EXPORT_QUERY,
    responses=EXPORT_REPLIES,
)
def export(campaign_id: str):
    """Stream an export (``service.datasets``): ``format=jsonl`` (the default) is the original
    JSON lines of :class:`~service.api.responses.ExportRecord`; ``format=<table>.<jsonl|parquet>``
    with table ``rankings``, ``consensus`` or ``pairs`` are the dataset tables, with
    ``images=url`` (the default), ``key`` or ``embed`` (Parquet only: the bytes in the rows)."""
    campaign, _ = owned_campaign(campaign_id)
    fmt, table, kind, mode = export_request()
    get_session().close()  # every batch reads in its own short transaction
    source = datasets.CampaignSource(current_app.extensions["rankloop_sessionmaker"], campaign.id)
    if fmt == "jsonl":
        body, media, name = records(source), "application/x-ndjson", "jsonl"
    else:
        images = datasets.Images(mode, get=store().get, url=absolute_url)
        body = datasets.export(source, table, kind, images)
        media, name = datasets.media_type(kind), f"{table}.{kind}"
    response = Response(stream_with_context(body), mimetype=media)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="rankloop-{campaign.id}-{name}"'
        if fmt != "jsonl"
        else f'attachment; filename="rankloop-{campaign.id}.jsonl"'
    )
    return response


def absolute_url(key: str) -> str:
    url = object_url(key)
    return f"{base_url()}{url}" if url.startswith("/") else url


def records(source: datasets.CampaignSource) -> Iterator[bytes]:
    """The original export: one ExportRecord per ranking."""
    for round_, ranking in source.rankings():
        keys = {i.id: i.key for i in round_.images}
        record = responses.ExportRecord(
            ranking_id=ranking.id,
            campaign_id=source.campaign.id,
            round=round_.number,
            round_kind=round_.kind,
            annotator_id=ranking.annotator_id,
            submitted_at=iso(ranking.submitted_at),
            late=ranking.late,
            attention_passed=ranking.attention_passed,
            order=ranking.order,
            order_keys=[
                [keys[i] for i in o] if isinstance(o, list) else keys[o] for o in ranking.order
            ],
            images=[
                responses.ExportImage(id=i.id, key=i.key, index=i.index, role=i.role)
                for i in round_.images
            ],
            prompt=source.campaign.prompt,
        )
        yield (json.dumps(record.model_dump(mode="json")) + "\n").encode()
