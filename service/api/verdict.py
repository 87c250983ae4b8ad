"""The crowd's verdict on a campaign (:mod:`service.verdicts`): read it, or ask for it."""

from __future__ import annotations

from collections.abc import Sequence

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.contracts import VERDICT_ROUND, RoundStatus
from rankloop.core.verdict import Verdict
from service import verdicts
from service.api import responses
from service.api.common import owned_campaign
from service.api.responses import json_response, no_store
from service.db import get_session
from service.models import Round
from service.rendering import run_step
from service.routing import Reply, ok, operation
from service.transitions import owner_actor

bp = Blueprint("verdict", __name__, url_prefix="/api/campaigns")


def verdict_response(
    session: Session, campaign_id: str, rounds: Sequence[Round] | None = None
) -> responses.Verdict:
    """The campaign's verdict as the API shows it (``rounds``: its rounds, if already read)."""
    if rounds is None:
        rounds = session.scalars(
            select(Round).where(Round.campaign_id == campaign_id, Round.kind == VERDICT_ROUND)
        ).all()
    asked = [r for r in rounds if r.kind == VERDICT_ROUND]
    verdict = verdicts.campaign_verdict(session, campaign_id) if asked else Verdict()
    return responses.Verdict(
        **verdict.to_dict(),
        summary=verdict.sentence(),
        rounds=[r.number for r in asked],
        open=any(r.status == RoundStatus.OPEN for r in asked),
    )


@operation(
    bp,
    "GET",
    "/<campaign_id>/verdict",
    summary=(
        "The crowd's verdict: the share of answers preferring the delivered image to the "
        "starting one, with its 95 % Wilson interval"
    ),
    auth="owner",
    responses=ok(responses.Verdict),
)
def show_verdict(campaign_id: str):
    campaign, _ = owned_campaign(campaign_id)
    return no_store(json_response(verdict_response(get_session(), campaign.id)))


@operation(
    bp,
    "POST",
    "/<campaign_id>/verdict",
    summary=(
        "Ask the crowd for a verdict on an ended campaign: it runs again for one verdict round "
        "(the delivered image against the start, asked first of annotators who did not steer), "
        "then ends as it was; the answers add to any earlier verdict's"
    ),
    auth="owner",
    responses={202: Reply("The verdict round is open", responses.Verdict)},
)
def request_verdict(campaign_id: str):
    campaign, owner = owned_campaign(campaign_id)
    session = get_session()
    run_step(verdicts.request, campaign.id, owner_actor(owner.key_id), session=session)
    session.expire_all()
    return no_store(json_response(verdict_response(session, campaign.id), 202))
