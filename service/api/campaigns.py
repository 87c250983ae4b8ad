"""Owner endpoints for campaigns: create, list, show, start/pause/resume/stop."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from rankloop.core.campaign_settings import CampaignSettings
from rankloop.core.contracts import RoundStatus
from rankloop.core.optimizer.visibility import distinguishable
from service import closing, forking, lifecycle
from service.api import events, responses
from service.api.common import (
    PAGE_QUERY,
    check_model,
    iso,
    json_body,
    object_url,
    owned_campaign,
    page_of,
)
from service.api.responses import json_response, no_store
from service.api.verdict import verdict_response
from service.auth import Owner, require_owner
from service.db import get_session
from service.models import Campaign, Ranking, Round
from service.rendering import run_step
from service.routing import Reply, ok, operation
from service.schemas import CampaignCreate, ForkCreate, validate
from service.statements import round_quorum
from service.transitions import audit, owner_actor

bp = Blueprint("campaigns", __name__, url_prefix="/api/campaigns")

ACTIONS = lifecycle.CONTROLS


@operation(
    bp,
    "POST",
    "",
    summary="Create a campaign",
    auth="owner",
    body=CampaignCreate,
    responses={201: Reply("Created", responses.Campaign)},
)
def create_campaign():
    session = get_session()
    owner = require_owner(session)
    body: CampaignCreate = validate(CampaignCreate, json_body())
    check_model(body.generator, body.model)
    campaign = Campaign(
        name=body.name, prompt=body.prompt, settings=body.settings(), owner_key_id=owner.key_id
    )
    session.add(campaign)
    session.flush()
    audit(session, "campaign_created", campaign.id, actor=_actor(owner))
    session.commit()
    if body.start:
        run_step(lifecycle.start, campaign.id, _actor(owner), session=session)
    session.expire_all()
    return no_store(json_response(campaign_response(campaign), 201))


@operation(
    bp,
    "GET",
    "",
    summary=(
        "List campaigns, newest first, a page at a time (next_offset: the next page); a "
        "study's campaigns are listed in their study (GET /api/studies/<id>)"
    ),
    auth="owner",
    query=PAGE_QUERY,
    responses=ok(responses.CampaignList),
)
def list_campaigns():
    session = get_session()
    owner = require_owner(session)
    query = (
        select(Campaign)
        .where(Campaign.study_id.is_(None))  # a study of 500 prompts would bury the rest
        .order_by(Campaign.created_at.desc(), Campaign.id)
    )
    if not owner.is_admin:
        query = query.where(Campaign.owner_key_id == owner.key_id)
    page, more = page_of(session, query)
    listed = [campaign_response(c, history=False) for c in page]
    return no_store(json_response(responses.CampaignList(campaigns=listed, next_offset=more)))


@operation(
    bp,
    "GET",
    "/<campaign_id>",
    summary="Show a campaign: status, current round, best image, history",
    auth="owner",
    responses=ok(responses.Campaign),
)
def show_campaign(campaign_id: str):
    campaign, _ = owned_campaign(campaign_id)
    return no_store(json_response(campaign_response(campaign)))


@operation(
    bp,
    "POST",
    "/<campaign_id>/fork",
    summary=(
        "A new campaign from round N of this one (same state; what may change: ForkCreate), "
        "with a completion code of its own unless the body names one (completion_code, or a "
        "completion_url with its cc); the source's completion URL carries over only when it "
        "names no code"
    ),
    auth="owner",
    body=ForkCreate,
    responses={201: Reply("Created", responses.Campaign)},
)
def fork_campaign(campaign_id: str):
    """A new campaign from one of this campaign's rounds (:mod:`service.forking`)."""
    campaign, owner = owned_campaign(campaign_id)
    body = validate(ForkCreate, json_body())
    # The fork renders with the source's model (FORK_KEEPS): one since taken off the list is not.
    check_model(campaign.config.generator, campaign.config.model)
    changes = body.model_dump(exclude_unset=True, exclude={"round"})
    session = get_session()
    outcome = run_step(
        forking.fork, campaign.id, body.round, changes, owner.key_id, _actor(owner), session=session
    )
    forked = session.get(Campaign, outcome.campaign_id)
    assert forked is not None
    return no_store(json_response(campaign_response(forked), 201))


def control_campaign(campaign_id: str, action: str):
    campaign, owner = owned_campaign(campaign_id)
    session = get_session()
    run_step(ACTIONS[action], campaign.id, _actor(owner), session=session)
    session.expire_all()
    return no_store(json_response(campaign_response(campaign)))


# One route per action, so that a POST on another sub-resource (export) is a 405, not a 404.
for _action in ACTIONS:
    operation(
        bp,
        "POST",
        f"/<campaign_id>/{_action}",
        summary=f"{_action.title()} the campaign",
        auth="owner",
        responses=ok(responses.Campaign),
        endpoint=f"control_{_action}",
        defaults={"action": _action},
    )(control_campaign)


def _actor(owner: Owner) -> str:
    return owner_actor(owner.key_id)


def _winner_url(round_: Round, thumb: bool = False) -> str | None:
    winner = closing.winner_image(round_)
    if winner is None:
        return None
    return object_url((winner.thumb_key or winner.key) if thumb else winner.key)


def round_response(round_: Round, n_rankings: int, settings: CampaignSettings) -> responses.Round:
    by_position = {image.position: image for image in round_.images}
    consensus = round_.consensus
    return responses.Round(
        number=round_.number,
        kind=round_.kind,
        status=round_.status,
        quorum=round_quorum(settings, round_.quorum),
        quorum_cap=settings.annotators_per_round,
        rankings_count=n_rankings,
        close_reason=round_.close_reason,
        straggler_offered_at=iso(round_.straggler_at),
        deadline=iso(round_.deadline),
        extensions=round_.extensions,
        error=round_.error,
        age_s=events.round_age_s(round_),
        problem=events.round_problem(get_session(), round_),
        images=[
            responses.RoundImage(
                id=i.id,
                url=object_url(i.key),
                thumb_url=object_url(i.thumb_key or i.key),
                role=i.role,
                index=i.index,
            )
            for i in round_.images
        ],
        consensus=None
        if consensus is None
        else responses.RoundConsensus(
            order=[by_position[p].id for p in consensus.order if p in by_position],
            agreement=consensus.agreement,
            distinguishable=distinguishable(consensus.agreement, consensus.n_rankings),
            weights=consensus.weights,
            method=consensus.method,
        ),
    )


def campaign_response(campaign: Campaign, history: bool = True) -> responses.CampaignSummary:
    """The campaign with its current round; with ``history``, every round's summary too."""
    session = get_session()
    counts = dict(
        session.execute(
            select(Ranking.round_id, func.count())
            .join(Round, Round.id == Ranking.round_id)
            .where(Round.campaign_id == campaign.id)
            .group_by(Ranking.round_id)
        ).all()
    )
    all_rounds = session.scalars(
        select(Round)
        .where(Round.campaign_id == campaign.id)
        .order_by(Round.number)
        .options(selectinload(Round.images), selectinload(Round.consensus))
    ).all()
    current = all_rounds[-1] if all_rounds else None
    best = next((url for r in reversed(all_rounds) if (url := _winner_url(r))), None)
    current_best = next((r for r in reversed(all_rounds) if r.best_key), None)
    summary = responses.CampaignSummary(
        id=campaign.id,
        name=campaign.name,
        prompt=campaign.prompt,
        status=campaign.status,
        error=campaign.error,
        created_at=iso(campaign.created_at),
        finished_at=iso(campaign.finished_at),
        settings=campaign.settings,
        completion_code=campaign.completion_code,
        rounds_done=sum(1 for r in all_rounds if r.status == RoundStatus.CLOSED),
        current_round=None
        if current is None
        else round_response(current, counts.get(current.id, 0), campaign.config),
        best_image_url=best,
        # The optimizer's point as of the latest render: what the campaign delivers.
        current_best_image_url=None if current_best is None else object_url(current_best.best_key),
        study_id=campaign.study_id,
    )
    if not history:
        return summary
    return responses.Campaign(
        **dict(summary),
        verdict=verdict_response(session, campaign.id, all_rounds),
        history=[
            responses.HistoryEntry(
                number=r.number,
                kind=r.kind,
                status=r.status,
                best_image_url=_winner_url(r),
                best_thumb_url=_winner_url(r, thumb=True),
                current_best_url=object_url(r.best_thumb_key or r.best_key) if r.best_key else None,
                agreement=r.consensus.agreement if r.consensus else None,
                n_rankings=counts.get(r.id, 0),
                close_reason=r.close_reason,
                stats=r.stats or {},
                render_seconds=r.render_seconds,
                opened_at=iso(r.opened_at),
                closed_at=iso(r.closed_at),
            )
            for r in all_rounds
        ],
    )
