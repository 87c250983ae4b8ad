"""A preview of a campaign's starting image, before the campaign exists.

``POST /api/previews`` takes a campaign's settings as ``POST /api/campaigns`` does (validated
the same) and queues a render of round 0 through the render workers' usual task, for a preview
id that names no campaign, with the fewest candidates (``MIN_M``) and no attention image: the
round's ``best`` image is the optimizer's starting point rendered clean, what round 0 of the
campaign would deliver. Nothing goes into the database: the worker writes its objects and, last,
its manifest in the store as for any round, and ``GET /api/previews/<id>`` reads that manifest
(202 while rendering; ``failed`` with the worker's message for a permanent render error).

The render worker has no "centre only" mode, so a preview costs ``MIN_M`` + 1 renders; it is
sent at once (outside the owner's render slots) and never re-sent when lost: the page asks again.
A preview's id carries an HMAC keyed with the stored hash of the owner's credential (as stream
tickets do, :mod:`service.api.stream`): only the owner who asked can read it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets

from flask import Blueprint, current_app

from rankloop.core.contracts import (
    MIN_M,
    RenderMessage,
    RenderResult,
    RenderSettings,
    heartbeat_key,
    parse,
)
from rankloop.core.errors import NotFound, StorageError
from rankloop.core.storage import round_prefix
from service.api import responses
from service.api.common import check_model, json_body, object_url, store
from service.api.responses import json_response
from service.api.stream import owner_secret_hash
from service.auth import Owner, require_owner
from service.db import get_session
from service.jobs import send_render
from service.rendering import IMAGE_SALT
from service.routing import Reply, operation
from service.schemas import CampaignCreate, validate

bp = Blueprint("previews", __name__, url_prefix="/api/previews")

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
    owner = require_owner(get_session())
    body: CampaignCreate = validate(CampaignCreate, json_body())
    check_model(body.generator, body.model)
    render_id = secrets.token_hex(16)  # a campaign id's shape: the store and /objects take it
    settings = {
        **body.settings(),
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
    try:
        send_render(current_app, message, f"preview-{render_id}", linked=False)
    except Exception as error:  # the broker is down
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


def _pending(preview_id: str) -> responses.Preview:
    return responses.Preview(
        id=preview_id,
        status="rendering",
        image_url=None,
        thumb_url=None,
        render_seconds=None,
        error=None,
    )
