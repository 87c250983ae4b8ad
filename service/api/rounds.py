"""Owner endpoints for rounds: one round in detail (its images, every annotator's ranking side
by side with the consensus, who passed the attention check, the optimizer's figures), and the
images the campaign delivered, one per round, in a zip."""

from __future__ import annotations

import tempfile

from flask import Blueprint, send_file
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from rankloop.core.errors import NotFound
from service.api import responses
from service.api.campaigns import round_response
from service.api.common import iso, owned_campaign, store
from service.api.responses import json_response
from service.db import get_session
from service.image_zip import delivered_keys, write_zip
from service.models import Annotator, Ranking, Round
from service.routing import Reply, ok, operation

bp = Blueprint("rounds", __name__, url_prefix="/api/campaigns")


@operation(
    bp,
    "GET",
    "/<campaign_id>/rounds/<number>",
    summary=(
        "One round in detail: its images, every ranking, the consensus and the optimizer's figures"
    ),
    auth="owner",
    responses=ok(responses.RoundDetail),
)
def show_round(campaign_id: str, number: str):
    campaign, _ = owned_campaign(campaign_id)
    if not (number.isascii() and number.isdigit() and len(number) < 10):
        raise NotFound(f"campaign {campaign.id!r} has no round {number[:20]!r}")
    session = get_session()
    round_ = session.scalar(
        select(Round)
        .where(Round.campaign_id == campaign.id, Round.number == int(number))
        .options(selectinload(Round.images), selectinload(Round.consensus))
    )
    if round_ is None:
        raise NotFound(f"campaign {campaign.id!r} has no round {number}")
    rows = session.execute(
        select(Ranking, Annotator.participant_id, Annotator.excluded)
        .join(Annotator, Annotator.id == Ranking.annotator_id)
        .where(Ranking.round_id == round_.id)
        .order_by(Ranking.id)
    ).all()
    # The images and the consensus as the campaign shows its current round: one shape.
    summary = round_response(round_, len(rows), campaign.config)
    return json_response(
        responses.RoundDetail(
            number=round_.number,
            kind=round_.kind,
            status=round_.status,
            quorum=summary.quorum,
            quorum_cap=summary.quorum_cap,
            close_reason=summary.close_reason,
            straggler_offered_at=summary.straggler_offered_at,
            images=summary.images,
            rankings=[
                responses.RoundRanking(
                    annotator_id=ranking.annotator_id,
                    participant_id=participant,
                    order=ranking.order,
                    attention_passed=ranking.attention_passed,
                    late=ranking.late,
                    created_at=iso(ranking.created_at),
                    excluded=excluded,
                )
                for ranking, participant, excluded in rows
            ],
            consensus=summary.consensus,
            stats=round_.stats or {},
            render_seconds=round_.render_seconds,
            opened_at=iso(round_.opened_at),
            closed_at=iso(round_.closed_at),
        )
    )


# Held in memory up to this size, then on disk: a long campaign's images may be large.
SPOOL_BYTES = 32 * 2**20


@operation(
    bp,
    "GET",
    "/<campaign_id>/images.zip",
    summary=(
        "The delivered image of every rendered round (the optimizer's point, rendered clean), "
        "full size, in a zip: round-NNNN.png"
    ),
    auth="owner",
    responses={200: Reply("A zip archive", media=("application/zip",))},
)
def download_images(campaign_id: str):
    """The delivered image of every rendered round (the optimizer's point, rendered clean), full
    size, as ``round-NNNN.<ext>`` in a zip (stored: images are compressed already)."""
    campaign, _ = owned_campaign(campaign_id)
    keys = delivered_keys(get_session(), campaign.id)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (send_file closes it)
    write_zip(spool, keys, store().get)
    spool.seek(0)
    return send_file(
        spool,
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"rankloop-{campaign.id}-images.zip",
    )
