"""What every blueprint shares: the JSON body, the owner's campaign, URLs for images and links,
time formatting, pages."""

from __future__ import annotations

import datetime as dt
from typing import Any, overload

from flask import current_app, request
from sqlalchemy import Select
from sqlalchemy.orm import Session

from rankloop.core.contracts import model_refusal
from rankloop.core.errors import InvalidInput, NotFound
from rankloop.core.storage import ObjectStore
from service.auth import Owner, require_owner
from service.config import app_settings
from service.db import get_session
from service.models import Campaign
from service.schemas import UnprocessableInput


def json_body() -> Any:
    """The request's JSON (parsed by the app's strict provider, service/json.py)."""
    if not request.is_json:
        raise InvalidInput("send a JSON object with 'Content-Type: application/json'")
    try:
        return current_app.json.loads(request.get_data(cache=True))
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError included
        raise InvalidInput(f"the body is not valid JSON: {error}") from None


def owned_campaign(campaign_id: str) -> tuple[Campaign, Owner]:
    """The campaign the request's owner asks for, and that owner: 401 without an owner's key,
    404 for no such campaign, 403 for another owner's."""
    session = get_session()
    owner = require_owner(session)
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    owner.check(campaign)
    return campaign, owner


def check_model(generator: str, model: str | None) -> None:
    """Refuse (422, naming the models offered) a model the operator did not list
    (``RANKLOOP_MODELS``): the render worker would open any path or hub id it names."""
    refusal = model_refusal(generator, model, app_settings().models)
    if refusal is not None:
        raise UnprocessableInput(
            f"model: {refusal}", details=[{"field": "model", "message": refusal}]
        )


@overload
def iso(moment: dt.datetime) -> str: ...
@overload
def iso(moment: dt.datetime | None) -> str | None: ...
def iso(moment: dt.datetime | None) -> str | None:
    return (
        None if moment is None else moment.replace(microsecond=moment.microsecond).isoformat() + "Z"
    )


def store() -> ObjectStore:
    return current_app.extensions["rankloop_store"]


@overload
def object_url(key: str) -> str: ...  # an object's key is never empty
@overload
def object_url(key: str | None) -> str | None: ...
def object_url(key: str | None) -> str | None:
    """The store's presigned URL when it has one (S3), else the coordinator's ``/objects/``."""
    if not key:
        return None
    url = store().url(key, app_settings().presign_expires_s)
    # The same as url_for("exports.get_object", key=key), without a routing lookup per image.
    return url or f"{request.script_root}/objects/{key}"


PAGE_LIMIT, MAX_PAGE_LIMIT = 100, 500  # GET /api/campaigns: default and largest page
MAX_OFFSET = 10**9  # within every database's integer
# page_args' parameters, as an operation's query (service.routing.operation)
PAGE_QUERY = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT},
    "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
}


def reliability_weights(campaign: Campaign) -> dict[str, float]:
    """Each annotator's reliability weight: the campaign's evidence about them pooled over every
    closed round (``Campaign.reliability``), the one number the annotator list and an
    annotator's own view both show (the weight a round's consensus gave them, as it stood
    before that round, is the per-round figure)."""
    if not campaign.reliability:
        return {}
    from rankloop.core.consensus import AnnotatorReliability

    reliability = AnnotatorReliability.from_dict(campaign.reliability)
    return {str(a): float(reliability.weight(a)) for a in reliability.annotators}


def page_args() -> tuple[int, int]:
    """``?limit=&offset=`` of a listed page, checked: (limit, offset)."""
    return (
        _int_arg("limit", PAGE_LIMIT, 1, MAX_PAGE_LIMIT),
        _int_arg("offset", 0, 0, MAX_OFFSET),
    )


def page_of(session: Session, query: Select[Any]) -> tuple[list[Any], int | None]:
    """The page of ``query`` (an ordered select of one entity) that ``?limit=&offset=`` asks
    for (:func:`page_args`): its rows, and the ``offset`` of the next page (None on the last;
    one row more than the page is read to tell)."""
    limit, offset = page_args()
    rows = session.scalars(query.limit(limit + 1).offset(offset)).all()
    return list(rows[:limit]), offset + limit if len(rows) > limit else None


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}, got {raw[:20]!r}")
    return int(raw)


def base_url() -> str:
    return (app_settings().base_url or request.host_url).rstrip("/")


def task_link(token: str) -> str:
    return f"{base_url()}/task#token={token}"
