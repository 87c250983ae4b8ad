"""``rankloop_renders_resent_total{reason}``: renders the sweep sent again, by why
(:mod:`service.sweep`: ``unsent``, the broker was down when the round was made;
``heartbeat_stale``, its worker stopped beating; ``not_queued``, no worker holds it and the
broker lost its message; ``timeout``, not back within ``render_timeout_s``; ``unknown``, sent
again by an older release). Counted from the audit log at each scrape, like the other database
metrics (:mod:`service.metrics`), so every process answers the same numbers whoever re-sent.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from service.db import session_scope
from service.models import AuditEvent

RESENT = "round_render_resent"  # the audit event of a re-send (service.sweep)


class ResentCollector(Collector):
    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[CounterMetricFamily]:
        reason = AuditEvent.data["reason"].as_string()
        with self.app.app_context(), session_scope(self.app) as session:
            rows = session.execute(
                select(reason, func.count()).where(AuditEvent.kind == RESENT).group_by(reason)
            ).all()
        family = CounterMetricFamily(
            "rankloop_renders_resent", "Renders the sweep sent again, by reason", labels=["reason"]
        )
        counts: dict[str, int] = {}
        for why, count in rows:
            counts[why or "unknown"] = counts.get(why or "unknown", 0) + int(count)
        for why, count in sorted(counts.items()):
            family.add_metric([why], count)
        yield family


def init_app(app: Flask) -> None:
    """Add the counter to the registry ``/metrics`` serves (after :func:`metrics.init_app`)."""
    app.extensions["rankloop_metrics"].register(ResentCollector(app))
