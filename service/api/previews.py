"""A preview of a campaign's starting image, before the campaign exists.

``POST /api/previews`` takes a campaign's settings as ``POST /api/campaigns`` does (validated
the same) and queues a render of round 0 through the render workers' usual task, for a preview
id that names no campaign, with the fewest candidates (``MIN_M``) and no attention image: the
round's ``best`` image is the optimizer's starting point rendered clean, what round 0 of the
campaign would deliver. Nothing goes into the database: the worker writes its objects and, last,
its manifest in the store as for any round, and ``GET /api/previews/<id>`` reads that manifest
(202 while rendering; ``failed`` with the worker's message for a permanent render error).

The render worker has no "centre only" mode, so a preview costs ``MIN_M`` + 1 renders, each at
most ``PREVIEW_MAX_PIXELS`` (512²; a larger size is a 422 naming width and height). A preview
takes one of its owner's render slots (``RANKLOOP_RENDER_SLOTS_PER_OWNER``, counted with the
owner's rounds in flight: :func:`service.render_slots.owner_slot_free`) until its image or its
failure is in the store; with every slot busy it is refused, 429 with ``Retry-After``, not
queued (a form's preview is wanted now or not at all). It is sent at once and never re-sent when
lost: the page asks again.
A preview's id carries an HMAC keyed with the stored hash of the owner's credential (as stream
tickets do, :mod:`service.api.stream`): only the owner who asked can read it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from typing import Final

from flask import Blueprint, current_app

from rankloop.core.contracts import (
    MIN_M,
    RenderMessage,
    RenderResult,
    RenderSettings,
    heartbeat_key,
    parse,
)
from rankloop.core.errors import NotFound, RankloopError, StorageError
from rankloop.core.storage import round_prefix
from service.api import responses
from service.api.common import check_model, json_body, object_url, store
from service.api.responses import json_response
from service.api.stream import owner_secret_hash
from service.auth import Owner, require_owner
from service.db import get_session
from service.jobs import send_render
from service.preview_renders import preview_done, preview_sent
from service.render_messages import IMAGE_SALT
from service.render_sending import send_waiting
from service.render_slots import owner_slot_free
from service.routing import Reply, operation
from service.schemas import CampaignCreate, UnprocessableInput, validate

bp = Blueprint("previews", __name__, url_prefix="/api/previews")

PREVIEW_MAX_PIXELS: Final = 512 * 512  # per image of a preview
PREVIEW_RETRY_AFTER_S: Final = 10  # a busy owner's next preview: a render's time, roughly
PREVIEW_ID = re.compile(r"^([0-9a-f]{32})-([0-9a-f]{32})$")  # <render id>-<mac>


def _mac(owner: Owner, render_id: str) -> str:
    secret = owner_secret_hash(get_session(), owner)
    message = f"rankloop-preview|{render_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


@operation(
    bp,
    "POST",
    "",
    summary=(
        "Render a campaign's starting image before creating it (the settings of POST "
        "/api/campaigns, validated the same; rendered by the workers: poll GET /api/previews/ID)"
    ),
    auth="owner",
    body=CampaignCreate,
    responses={202: Reply("Queued", responses.Preview)},
)
def create_preview():
    session = get_session()
    owner = require_owner(session)
    body: CampaignCreate = validate(CampaignCreate, json_body())
    check_model(body.generator, body.model)
    resolved = body.settings()
    _check_preview_size(resolved["width"], resolved["height"])
    render_id = secrets.token_hex(16)  # a campaign id's shape: the store and /objects take it
    settings = {
        **resolved,
        "prompt": body.prompt,
        "m": MIN_M,
        "k": None,
        "attention_check": False,
        IMAGE_SALT: secrets.token_hex(16),
    }
    message = RenderMessage(
        campaign_id=render_id,
        round_number=0,
        settings=parse(RenderSettings, settings, "campaign settings"),
    )
    # The owner's slot check and the record of this preview, in one transaction (the slot lock).
    if not owner_slot_free(session, owner.key_id):
        session.rollback()
        raise RenderSlotsBusy(
            "every render slot of this owner is busy (RANKLOOP_RENDER_SLOTS_PER_OWNER: rounds "
            "and previews in flight); ask for the preview again when one is back"
        )
    preview_sent(session, owner.key_id, render_id)
    session.commit()
    try:
        send_render(current_app, message, f"preview-{render_id}", linked=False)
    except Exception as error:  # the broker is down: the preview holds no slot
        preview_done(session, owner.key_id, render_id)
        session.commit()
        send_waiting(owner_key_id=owner.key_id)  # the slot it took, to a waiting render
        raise StorageError(f"could not queue the preview render: {error}") from None
    preview_id = f"{render_id}-{_mac(owner, render_id)}"
    return json_response(_pending(preview_id), 202)


@operation(
    bp,
    "GET",
    "/<preview_id>",
    summary="A preview: 202 while rendering, 200 when ready (the image) or failed (the error)",
    auth="owner",
    responses={
        200: Reply("Ready or failed", responses.Preview),
        202: Reply("Still rendering", responses.Preview),
    },
)
def show_preview(preview_id: str):
    owner = require_owner(get_session())
    match = PREVIEW_ID.match(preview_id)
    if match is None or not hmac.compare_digest(match[2], _mac(owner, match[1])):
        raise NotFound("no such preview")
    render_id = match[1]
    objects = store()
    manifest = f"{round_prefix(render_id, 0)}/manifest.json"
    if objects.exists(manifest):
        result = RenderResult.model_validate(json.loads(objects.get(manifest)))
        best = result.best
        return json_response(
            responses.Preview(
                id=preview_id,
                status="ready",
                image_url=object_url(best.key) if best else None,
                thumb_url=object_url(best.thumb_key or best.key) if best else None,
                render_seconds=result.render_seconds,
                error=None,
            )
        )
    beat = heartbeat_key(render_id, 0)
    error = json.loads(objects.get(beat)).get("error") if objects.exists(beat) else None
    if error:
        return json_response(
            responses.Preview(
                id=preview_id,
                status="failed",
                image_url=None,
                thumb_url=None,
                render_seconds=None,
                error=str(error)[:1000],
            )
        )
    return json_response(_pending(preview_id), 202)


class RenderSlotsBusy(RankloopError):
    """Every render slot of the owner is busy: ask again later (429 with Retry-After)."""

    http_status = 429
    code = "render_slots_busy"
    retry_after = PREVIEW_RETRY_AFTER_S


def _check_preview_size(width: int | None, height: int | None) -> None:
    """A preview renders at most ``PREVIEW_MAX_PIXELS`` per image (a checkpoint's native size,
    unknown here, is the worker's to bound)."""
    if width is None or height is None or width * height <= PREVIEW_MAX_PIXELS:
        return
    message = (
        f"a preview renders at most {PREVIEW_MAX_PIXELS:,} pixels per image (512 × 512); "
        f"{width} × {height} is more: preview at a smaller size"
    )
    raise UnprocessableInput(
        message,
        details=[{"field": name, "message": message} for name in ("width", "height")],
    )


def _pending(preview_id: str) -> responses.Preview:
    return responses.Preview(
        id=preview_id,
        status="rendering",
        image_url=None,
        thumb_url=None,
        render_seconds=None,
        error=None,
    )
