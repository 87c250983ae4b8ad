"""The renders waiting, as ``/readyz`` and ``/metrics`` tell them: a stalled GPU tier is said,
never acted on by the web tier.

A render waits while its round is ``rendering`` in a live campaign. It is *stalled* when it has
waited ``render_lost_after_s`` or more and no render worker beats on this coordinator's route
(:func:`service.health.render_workers`: the GPU tier is down, or listens on another queue):
the sweep can send it again, but nothing renders it. A render a worker lost while others beat
is not stalled: the sweep sends it again within seconds (:mod:`service.sweep`).

Readiness stays 200 for a stall and says it in its body: a web process still serves every open
round's annotators, their rankings and the owners' consoles, and a load balancer that took every
web process out of rotation because a GPU worker is gone would turn a render stall into a full
outage. Alert on ``rankloop_renders_stalled`` instead (docs/guides/deploy.md, "Monitoring and alerts").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rankloop.core.contracts import CAMPAIGN_LIVE, RoundStatus
from service.config import settings_of
from service.models import Campaign, Round


def _waiting_since():  # type: ignore[no-untyped-def]
    """Since when a render has waited: sent, or (never sent: its owner's render slots were
    full, or the broker was down) since its round was made."""
    return func.coalesce(Round.render_enqueued_at, Round.created_at)


@dataclass(frozen=True)
class Backlog:
    waiting: int  # renders of live campaigns not back yet
    oldest_s: float | None  # how long the oldest of them has waited; None: none waits
    render_workers: int  # render workers beating on this coordinator's route
    stalled: int  # waiting render_lost_after_s or more with no render worker beating


def render_backlog(session: Session, app: Flask, now: dt.datetime, workers: int) -> Backlog:
    """One query for the waiting renders, a second only when no render worker beats;
    ``workers``: the render workers beating on this coordinator's route
    (:func:`service.health.render_workers`, which reads their heartbeats)."""
    live = (Round.status == RoundStatus.RENDERING, Campaign.status.in_(CAMPAIGN_LIVE))
    waiting_q = select(func.count(), func.min(_waiting_since())).join(Campaign).where(*live)
    waiting, oldest = session.execute(waiting_q).one()
    stalled = 0
    if waiting and not workers:
        since = now - dt.timedelta(seconds=settings_of(app).render_lost_after_s)
        stalled = (
            session.scalar(
                select(func.count())
                .select_from(Round)
                .join(Campaign)
                .where(*live, _waiting_since() <= since)
            )
            or 0
        )
    return Backlog(
        waiting=int(waiting),
        oldest_s=round((now - oldest).total_seconds(), 1) if oldest else None,
        render_workers=workers,
        stalled=int(stalled),
    )


def stalled_metric(
    session: Session, app: Flask, now: dt.datetime, workers: int
) -> Iterator[GaugeMetricFamily]:
    """``rankloop_renders_stalled``, read in the scrape's database session."""
    yield GaugeMetricFamily(
        "rankloop_renders_stalled",
        "Renders waiting render_lost_after_s or more while no render worker beats on this "
        "coordinator's route (alert on > 0: nothing renders them)",
        value=render_backlog(session, app, now, workers).stalled,
    )


__all__ = ["Backlog", "render_backlog", "stalled_metric"]
