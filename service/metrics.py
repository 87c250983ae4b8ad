"""Prometheus metrics at ``/metrics`` (prometheus-client's text format).

What the database knows is computed from it at scrape time, so every web process answers the
same, exact numbers however many gunicorn processes there are and whoever did the work (a web
process, a bookkeeping worker, a render worker):

- ``rankloop_metrics_database_up``: 1 when this scrape read the database, else 0 (the database
  unreachable: the families below read from it are left out, and the rest is served, 200);
- ``rankloop_rounds{status}`` and ``rankloop_round_oldest_age_seconds{status}``: rounds by
  status, and how long the oldest round still rendering (since its render was sent) or open
  (since it opened) has been so: a stuck round shows as a growing age;
- ``rankloop_campaigns{status}``;
- ``rankloop_rankings_total``: every ranking stored (a counter: ``rate(...[5m]) * 60`` is the
  rankings per minute);
- ``rankloop_render_seconds``: a histogram of the rounds' render times;
- ``rankloop_queue_depth{queue}``: messages waiting on the render and bookkeeping queues, asked
  of the broker (absent when the broker does not answer): on RabbitMQ the queues' message
  counts, on Redis the length of the lists kombu keeps them in, under the broker's key prefix
  (:func:`service.jobs.redis_queue_keys`);
- ``rankloop_render_workers{route}``: render workers whose heartbeat is fresh, reading this
  coordinator's render queue (``same``) or another (``other``: a broker configuration mismatch
  when ``same`` is 0; ``service.health.render_workers``);
- ``rankloop_renders_stalled``: renders waiting ``render_lost_after_s`` or more while no render
  worker beats on this coordinator's route (:mod:`service.render_backlog`): alert on it.

The responses of this process (``rankloop_http_responses_total{endpoint, status}``, 4xx and
5xx only) are counted where they happen: set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory,
emptied at each start) under gunicorn and every process's counts are summed into each scrape
(prometheus-client's multiprocess mode); without it each process reports its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError

from rankloop.core.contracts import COORD_QUEUE, GPU_QUEUE, RoundStatus
from rankloop.core.settings import broker_is_redis, broker_settings
from service.config import settings_of
from service.db import session_scope
from service.health import render_workers
from service.jobs import redis_queue_keys
from service.models import Campaign, Ranking, Round, utcnow
from service.render_backlog import stalled_metric
from service.resend_metrics import renders_resent
from service.routing import Reply, operation

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RENDER_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Since when a round has been in its state, for the states a round leaves by itself.
_SINCE = {RoundStatus.RENDERING: func.coalesce(Round.render_enqueued_at, Round.created_at),
          RoundStatus.OPEN: Round.opened_at}  # fmt: skip


class DatabaseCollector(Collector):
    """The gauges and counters the database holds, read at each scrape (one app's)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator:
        families: list = []
        database_up = True
        try:
            with self.app.app_context(), session_scope(self.app) as session:
                families += _rounds(session, utcnow())
                families += _campaigns(session)
                families += _rankings(session)
                families += _render_seconds(session)
                families += renders_resent(session)
                beating = len(render_workers(self.app).same)
                families += stalled_metric(session, self.app, utcnow(), beating)
        except SQLAlchemyError as error:
            # The database down: the scrape goes on with what this process knows, and says so.
            log.warning("metrics without the database: %s", error)
            families, database_up = [], False
        up = GaugeMetricFamily(
            "rankloop_metrics_database_up",
            "Whether this scrape read the database (0: the gauges read from it are left out)",
            value=int(database_up),
        )
        yield up
        yield from families
        yield from _queue_depths(self.app)
        yield from _render_workers(self.app)


def _rounds(session, now: dt.datetime) -> Iterator:
    counts = dict(session.execute(select(Round.status, func.count()).group_by(Round.status)).all())
    rounds = GaugeMetricFamily("rankloop_rounds", "Rounds by status", labels=["status"])
    for status in RoundStatus:
        rounds.add_metric([status], counts.get(status, 0))
    yield rounds
    ages = GaugeMetricFamily(
        "rankloop_round_oldest_age_seconds",
        "Seconds the oldest round in this status has been in it (0: none)",
        labels=["status"],
    )
    for status, since in _SINCE.items():
        oldest = session.scalar(select(func.min(since)).where(Round.status == status))
        ages.add_metric([status], (now - oldest).total_seconds() if oldest else 0.0)
    yield ages


def _campaigns(session) -> Iterator:
    counts = session.execute(select(Campaign.status, func.count()).group_by(Campaign.status))
    campaigns = GaugeMetricFamily("rankloop_campaigns", "Campaigns by status", labels=["status"])
    for status, count in counts:
        campaigns.add_metric([status], count)
    yield campaigns


def _rankings(session) -> Iterator:
    total = session.scalar(select(func.count()).select_from(Ranking)) or 0
    yield CounterMetricFamily("rankloop_rankings", "Rankings stored", value=total)


def _render_seconds(session) -> Iterator:
    seconds = Round.render_seconds
    columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in RENDER_BUCKETS]
    row = session.execute(
        select(func.count(seconds), func.sum(seconds), *columns).where(seconds.is_not(None))
    ).one()
    count, total = int(row[0] or 0), float(row[1] or 0.0)
    buckets = [(str(bound), int(n or 0)) for bound, n in zip(RENDER_BUCKETS, row[2:], strict=True)]
    yield HistogramMetricFamily(
        "rankloop_render_seconds",
        "Seconds each rendered round took on its render worker",
        buckets=[*buckets, ("+Inf", count)],
        sum_value=total,
    )


def _redis_depths(app: Flask) -> dict[str, int]:
    """Messages waiting on each task queue of a Redis broker: LLEN of its lists (an empty or
    never used queue has none: 0)."""
    import redis

    options = broker_settings(settings_of(app))
    transport = options["broker_transport_options"]
    # (kombu's redis+socket:// is redis-py's unix://)
    url = options["broker_url"].replace("redis+socket://", "unix://", 1)
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        depths = {}
        for queue in (GPU_QUEUE, COORD_QUEUE):
            pipe = client.pipeline(transaction=False)
            for key in redis_queue_keys(queue, transport):
                pipe.llen(key)
            depths[queue] = sum(pipe.execute())
        return depths
    finally:
        client.close()


def _queue_depths(app: Flask) -> Iterator:
    celery = app.extensions.get("celery")
    if celery is None:
        return
    depth = GaugeMetricFamily("rankloop_queue_depth", "Messages waiting", labels=["queue"])
    if broker_is_redis(settings_of(app).broker_url):
        try:
            depths = _redis_depths(app)
        except Exception as error:  # the broker down: no sample
            log.info("queue depth unavailable: %s", error)
            return
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        yield depth
        return
    try:
        with celery.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            channel = connection.default_channel
            for queue in (GPU_QUEUE, COORD_QUEUE):
                declared = channel.queue_declare(queue=queue, passive=True)
                depth.add_metric([queue], declared.message_count)
    except Exception as error:  # a queue never declared yet, or the broker down: no sample
        log.info("queue depth unavailable: %s", error)
        return
    yield depth


def _render_workers(app: Flask) -> Iterator:
    census = render_workers(app)
    workers = GaugeMetricFamily(
        "rankloop_render_workers",
        "Render workers beating, on this coordinator's route (same) or another (other: a "
        "broker configuration mismatch when same is 0)",
        labels=["route"],
    )
    workers.add_metric(["same"], len(census.same))
    workers.add_metric(["other"], len(census.other))
    yield workers


def _response_counter(registry: CollectorRegistry | None) -> Counter:
    return Counter(
        "rankloop_http_responses",
        "Error responses (4xx, 5xx) by endpoint and status",
        ["endpoint", "status"],
        registry=registry,
    )


def init_app(app: Flask) -> None:
    """Serve ``/metrics`` and count this app's error responses."""
    registry = CollectorRegistry()  # (no describe: nothing is read before a scrape)
    multiprocess = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiprocess:
        # Counts live in files shared by the processes; the collector sums them at scrape.
        MultiProcessCollector(registry, path=multiprocess)
        responses = _response_counter(None)
    else:
        responses = _response_counter(registry)
    registry.register(DatabaseCollector(app))
    app.extensions["rankloop_metrics"] = registry

    def count(response: Response) -> Response:
        if response.status_code >= 400:
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            responses.labels(endpoint, str(response.status_code)).inc()
        return response

    app.after_request(count)
    app.register_blueprint(bp)


@operation(
    bp,
    "GET",
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    responses={200: Reply("Metrics", media=("text/plain",))},
)
def metrics() -> Response:
    registry: CollectorRegistry = current_app.extensions["rankloop_metrics"]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE)
