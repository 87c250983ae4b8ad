"""What a campaign of a given shape will cost the owner: annotator time per ranking, measured on
this deployment (its rankings' time on task, relative to the time a task of their shape
typically takes), or the stated default before any (:func:`~rankloop.core.contracts.
typical_ranking_s`), and the pay per hour (setting ``pay_per_hour``). The console's
new-campaign form multiplies them by the rankings a campaign needs."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any, Final

from flask import Blueprint, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import CampaignFields, CampaignSettings
from rankloop.core.contracts import MAX_M, MAX_SIDE, MIN_M, typical_ranking_s
from rankloop.core.errors import InvalidInput
from service.api import responses
from service.api.responses import json_response, no_store
from service.auth import require_owner
from service.config import app_settings
from service.db import get_session
from service.models import Assignment, Campaign, Ranking, Round
from service.routing import ok, operation

bp = Blueprint("estimate", __name__, url_prefix="/api")

RECENT: Final = 2000  # the latest rankings measured (on time, not late)
MIN_MEASURED: Final = 5  # fewer: the stated default is used
ESTIMATE_QUERY: dict[str, dict[str, Any]] = {
    "m": {"type": "integer", "minimum": MIN_M, "maximum": MAX_M},
    "k": {"type": "integer", "minimum": 1, "maximum": MAX_M},
    "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
    "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
    "attention_check": {"type": "boolean"},
}


def _int(name: str, low: int, high: int) -> int | None:
    raw = request.args.get(name, "")
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = request.args.getlist(name)
    if not raw:
        return default
    if len(raw) > 1 or raw[0] not in ("true", "false"):
        raise InvalidInput(f"{name} must be true or false, once")
    return raw[0] == "true"


def _typical(stored: Mapping[str, Any]) -> float:
    """The typical seconds of a task of the campaign settings ``stored`` (as stored)."""
    resolved = CampaignSettings.from_stored(stored)
    return typical_ranking_s(
        resolved.m, resolved.k, resolved.width, resolved.height, resolved.attention_check
    )


def measured_pace(session: Session) -> tuple[float | None, int]:
    """The median of the latest rankings' time on task over the typical time of their task's
    shape (1: as the default says), and how many were measured."""
    rows = session.execute(
        select(Ranking.created_at, Assignment.created_at, Campaign.id, Campaign.settings)
        .join(Assignment, Assignment.id == Ranking.assignment_id)
        .join(Round, Round.id == Ranking.round_id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Ranking.late.is_(False))
        .order_by(Ranking.id.desc())
        .limit(RECENT)
    ).all()
    typical: dict[str, float] = {}
    paces = []
    for submitted, leased, campaign_id, stored in rows:
        if campaign_id not in typical:
            typical[campaign_id] = _typical(stored or {})
        paces.append(max(0.0, (submitted - leased).total_seconds()) / typical[campaign_id])
    if len(paces) < MIN_MEASURED:
        return None, len(paces)
    return statistics.median(paces), len(paces)


@operation(
    bp,
    "GET",
    "/estimate",
    summary=(
        "Annotator seconds per ranking for a campaign of this shape (measured on this "
        "deployment, else the stated default) and the pay per hour, for the cost estimate"
    ),
    auth="owner",
    query=ESTIMATE_QUERY,
    responses=ok(responses.Estimate),
)
def estimate():
    session = get_session()
    require_owner(session)
    defaults = CampaignFields.model_fields
    shape = {
        "m": _int("m", MIN_M, MAX_M) or defaults["m"].get_default(),
        "k": _int("k", 1, MAX_M),
        "width": _int("width", 1, MAX_SIDE),
        "height": _int("height", 1, MAX_SIDE),
        "attention_check": _bool("attention_check", default=True),
    }
    if shape["k"] is not None and shape["k"] > shape["m"]:
        shape["k"] = shape["m"]
    default_s = _typical({name: value for name, value in shape.items() if value is not None})
    pace, n = measured_pace(session)
    return no_store(
        json_response(
            responses.Estimate(
                seconds_per_ranking=default_s if pace is None else pace * default_s,
                default_seconds_per_ranking=default_s,
                measured=pace is not None,
                n_measured=n,
                pay_per_hour=app_settings().pay_per_hour,
            )
        )
    )
