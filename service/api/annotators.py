"""Annotators of a campaign as its owner manages them: task links made by hand (or pool
annotators, by the admin), the list with each one's weight, throughput and flags, and revoking
one. The recruitment link for crowd platforms and an annotator's own progress are
:mod:`service.api.recruitment`'s.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint
from sqlalchemy import func, or_, select

from rankloop.core.errors import Forbidden, NotFound
from service.api import annotator_responses
from service.api.common import (
    PAGE_QUERY,
    iso,
    json_body,
    owned_campaign,
    page_of,
    reliability_weights,
    task_link,
)
from service.api.responses import json_response, no_store
from service.auth import hash_token, new_token
from service.crediting import completion_withheld
from service.db import get_session
from service.models import Annotator, Ranking, Round, utcnow
from service.routing import Reply, ok, operation
from service.schemas import AnnotatorRevoke, AnnotatorsCreate, validate
from service.transitions import audit

bp = Blueprint("annotators", __name__)

IDLE_AFTER = dt.timedelta(minutes=10)


def is_pool(annotator: Annotator) -> bool:
    """A pool annotator: of no campaign and no study (a study's worker is neither too)."""
    return annotator.campaign_id is None and annotator.study_id is None


@operation(
    bp,
    "POST",
    "/api/campaigns/<campaign_id>/annotators",
    summary="Create annotators and their task links",
    auth="owner",
    body=AnnotatorsCreate,
    responses={201: Reply("Created", annotator_responses.NewAnnotators)},
)
def create_annotators(campaign_id: str):
    campaign, owner = owned_campaign(campaign_id)
    body: AnnotatorsCreate = validate(AnnotatorsCreate, json_body())
    if body.pool and not owner.is_admin:
        # Pool annotators work on every running campaign, other owners' included.
        raise Forbidden("only the admin key creates pool annotators")
    session = get_session()
    created = []
    for _ in range(body.count):
        token = new_token()
        annotator = Annotator(
            campaign_id=None if body.pool else campaign.id, token_hash=hash_token(token)
        )
        session.add(annotator)
        created.append((annotator, token))
    session.flush()
    audit(
        session,
        "annotators_created",
        campaign.id,
        count=body.count,
        pool=body.pool,
        actor="admin" if owner.is_admin else f"owner-key:{owner.key_id}",
    )
    session.commit()
    links = [
        annotator_responses.NewAnnotator(id=a.id, token=t, link=task_link(t)) for a, t in created
    ]
    return no_store(json_response(annotator_responses.NewAnnotators(annotators=links), 201))


@operation(
    bp,
    "GET",
    "/api/campaigns/<campaign_id>/annotators",
    summary=(
        "Annotators with reliability weight, throughput and flags, oldest first, a page at a "
        "time (next_offset: the next page)"
    ),
    auth="owner",
    query=PAGE_QUERY,
    responses=ok(annotator_responses.AnnotatorList),
)
def list_annotators(campaign_id: str):
    campaign, _ = owned_campaign(campaign_id)
    session = get_session()
    ranked = dict(
        session.execute(
            select(Ranking.annotator_id, func.count())
            .join(Round, Round.id == Ranking.round_id)
            .where(Round.campaign_id == campaign.id)
            .group_by(Ranking.annotator_id)
        ).all()
    )
    annotators, more = page_of(
        session,
        select(Annotator)
        .where(or_(Annotator.campaign_id == campaign.id, Annotator.id.in_(ranked)))
        .order_by(Annotator.created_at, Annotator.id),
    )
    weights = reliability_weights(campaign)
    now = utcnow()
    rows = []
    for a in annotators:
        weight = weights.get(a.id, a.weight)
        n = ranked.get(a.id, 0)
        flags: list[annotator_responses.AnnotatorFlag] = []
        if a.attention_failed and (
            a.attention_failed >= 2 or a.attention_failed >= 0.25 * max(n, 1)
        ):
            flags.append("failed_attention_checks")
        # The attention policy: a campaign's own annotator over it gets no completion code.
        withheld = completion_withheld(campaign, a)
        if withheld:
            flags.append("code_withheld")
        if weight is not None and weight < 0:
            flags.append("contrarian")
        elif weight is not None and weight < 0.25 and n >= 2:
            flags.append("low_weight")
        if a.last_seen is None or now - a.last_seen > IDLE_AFTER:
            flags.append("idle")
        rows.append(
            annotator_responses.AnnotatorRow(
                id=a.id,
                participant_id=a.participant_id,
                weight=weight,
                n_rankings=n,
                n_attention_failed=a.attention_failed,
                completion_withheld=withheld,
                created_at=iso(a.created_at),
                last_seen=iso(a.last_seen),
                pool=is_pool(a),
                study_id=a.study_id,
                flags=flags,
                revoked_at=iso(a.revoked_at),
                excluded=a.excluded,
            )
        )
    return json_response(annotator_responses.AnnotatorList(annotators=rows, next_offset=more))


@operation(
    bp,
    "POST",
    "/api/campaigns/<campaign_id>/annotators/<annotator_id>/revoke",
    summary=(
        "Revoke an annotator of the campaign (a worker of its study: from the whole study): "
        "their later requests answer 401 with the error code token_revoked (an unknown "
        "token's is unauthorized); what they gave stays, marked, and with exclude counts in "
        "no later consensus"
    ),
    auth="owner",
    body=AnnotatorRevoke,
    responses=ok(annotator_responses.AnnotatorRevoked),
)
def revoke_annotator(campaign_id: str, annotator_id: str):
    """Refuse the annotator's later requests: their token's hash is replaced by one of a token
    nobody holds, so every path that looks a token up (the hot paths too) answers 401; the old
    hash is kept, so that the 401 says ``token_revoked`` (:func:`service.auth.unknown_token`). What they
    gave stays; with ``exclude`` it counts in no consensus from then on."""
    campaign, owner = owned_campaign(campaign_id)
    body: AnnotatorRevoke = validate(AnnotatorRevoke, json_body())
    session = get_session()
    annotator = session.get(Annotator, annotator_id)
    if annotator is None or not (
        annotator.campaign_id == campaign.id
        # A worker of the campaign's study: the same owner's, revoked from the whole study.
        or (campaign.study_id is not None and annotator.study_id == campaign.study_id)
    ):
        # A pool annotator works for every campaign: only the admin may end that (not here).
        raise NotFound(f"campaign {campaign.id!r} has no annotator {annotator_id!r}")
    if annotator.revoked_at is None:
        annotator.revoked_token_hash = annotator.token_hash
    annotator.token_hash = hash_token(new_token())
    annotator.revoked_at = annotator.revoked_at or utcnow()
    annotator.excluded = annotator.excluded or body.exclude
    audit(
        session,
        "annotator_revoked",
        campaign.id,
        actor="admin" if owner.is_admin else f"owner-key:{owner.key_id}",
        annotator=annotator.id,
        exclude=annotator.excluded,
    )
    session.commit()
    return json_response(
        annotator_responses.AnnotatorRevoked(
            id=annotator.id, revoked_at=iso(annotator.revoked_at), excluded=annotator.excluded
        )
    )
