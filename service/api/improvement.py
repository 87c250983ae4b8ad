"""A campaign's improvement curve (:mod:`service.improvement`): each round's best image's
strength relative to round 0's, from the rankings already given, with a 95 % interval."""

from __future__ import annotations

from typing import Final

from flask import Blueprint

from service.api import responses
from service.api.common import owned_campaign, store
from service.api.responses import json_response, no_store
from service.db import get_session
from service.improvement import campaign_improvement
from service.routing import ok, operation

bp = Blueprint("improvement", __name__, url_prefix="/api/campaigns")

# Bootstrap draws of the page's curve: fewer than the report's (rankloop.core.improvement.
# BOOTSTRAP), so a request stays short (about a third of a second a round on this machine at
# 200 draws); the curve is kept until another round closes.
PAGE_DRAWS: Final = 60


@operation(
    bp,
    "GET",
    "/<campaign_id>/improvement",
    summary=(
        "Each round's best image's strength relative to round 0's (scaled Plackett-Luce "
        "utilities chained through the rounds' shared images; no extra rankings), with a 95 % "
        "bootstrap interval"
    ),
    auth="owner",
    responses=ok(responses.Improvement),
)
def show_improvement(campaign_id: str):
    campaign, _ = owned_campaign(campaign_id)
    curve = campaign_improvement(get_session(), store(), campaign.id, PAGE_DRAWS)
    points = [
        responses.StrengthPoint(round=p.round, strength=p.strength, low=p.low, high=p.high)
        for p in curve
    ]
    return no_store(json_response(responses.Improvement(points=points)))
