"""A campaign's audit log for its owner, and what it says about the current round.

``GET /api/campaigns/<id>/events``: the audit events, newest first, a page at a time. The
campaign response's current round carries :func:`round_age_s` and :func:`round_problem`, so a
stuck or failed round shows how long it has been so and why, without reading the log.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.contracts import RoundStatus
from service.api import responses
from service.api.common import PAGE_QUERY, iso, owned_campaign, page_of
from service.api.responses import json_response
from service.db import get_session
from service.models import AuditEvent, Round, utcnow
from service.routing import ok, operation

bp = Blueprint("events", __name__, url_prefix="/api/campaigns")

# Audit events that mean something went wrong with a round, and how to say it.
PROBLEMS = {
    "round_render_resent": "render re-sent",
    "round_render_waiting": "render waiting for a render slot",
    "round_extended": "deadline extended",
    "round_failed": "render failed",
}
FAILED_STEP = "_failed"  # close_failed, sweep_failed, ...: a step that raised (service.closing)


def round_age_s(round_: Round, now: dt.datetime | None = None) -> float | None:
    """Seconds ``round_`` has been in its status, when the row says since when."""
    since_by_status: dict[str, dt.datetime | None] = {
        RoundStatus.RENDERING: round_.render_enqueued_at or round_.created_at,
        RoundStatus.OPEN: round_.opened_at,
        RoundStatus.CLOSED: round_.closed_at,
    }
    since = since_by_status.get(round_.status)
    return None if since is None else round(((now or utcnow()) - since).total_seconds(), 3)


def round_problem(session: Session, round_: Round) -> str | None:
    """``round_``'s problems from the audit log, counted, the newest's error last:
    ``"render re-sent x2; deadline extended x1; last error: close_failed: ..."``."""
    events = session.execute(
        select(AuditEvent.kind, AuditEvent.data)
        .where(AuditEvent.campaign_id == round_.campaign_id)
        .where(AuditEvent.round_number == round_.number)
        .order_by(AuditEvent.id)
    ).all()
    problems = [(k, d) for k, d in events if k in PROBLEMS or k.endswith(FAILED_STEP)]
    if not problems and not round_.error:
        return None
    counts = Counter(kind for kind, _ in problems)
    order = list(dict.fromkeys(kind for kind, _ in reversed(problems)))[::-1]  # by last seen
    parts = [f"{PROBLEMS.get(kind, kind.replace('_', ' '))} x{counts[kind]}" for kind in order]
    errors = [f"{kind}: {data['error']}" for kind, data in problems if (data or {}).get("error")]
    last_error = errors[-1] if errors else round_.error
    if last_error:
        parts.append(f"last error: {last_error}"[:1000])
    return "; ".join(parts)


@operation(
    bp,
    "GET",
    "/<campaign_id>/events",
    summary="The campaign's audit log, newest first, a page at a time (next_offset: the next page)",
    auth="owner",
    query=PAGE_QUERY,
    responses=ok(responses.EventList),
)
def list_events(campaign_id: str):
    campaign, _ = owned_campaign(campaign_id)
    rows, more = page_of(
        get_session(),
        select(AuditEvent)
        .where(AuditEvent.campaign_id == campaign.id)
        .order_by(AuditEvent.id.desc()),
    )
    events = [
        responses.Event(
            id=e.id, at=iso(e.at), kind=e.kind, round=e.round_number, actor=e.actor, data=e.data
        )
        for e in rows
    ]
    return json_response(responses.EventList(events=events, next_offset=more))
