"""``rankloop_renders_resent_total{reason}``: renders the sweep sent again, by why
(:mod:`service.sweep`: ``unsent``, the broker was down when the round was made;
``heartbeat_stale``, its worker stopped beating; ``not_queued``, no worker holds it and the
broker lost its message; ``timeout``, not back within ``render_timeout_s``; ``slot_freed``,
sent for the first time once one of its owner's render slots freed; ``unknown``, sent
again by an older release). Counted from the audit log at each scrape, like the other database
metrics (:mod:`service.metrics`), so every process answers the same numbers whoever re-sent.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import AuditEvent

RESENT = "round_render_resent"  # the audit event of a re-send (service.sweep)


def renders_resent(session: Session) -> Iterator[CounterMetricFamily]:
    """The counter, read in the scrape's database session (:class:`service.metrics.
    DatabaseCollector`: left out, with the other database families, while the database is
    down)."""
    reason = AuditEvent.data["reason"].as_string()
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
