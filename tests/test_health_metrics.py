"""What an operator sees: the probes, the metrics, the audit log, request ids, and a database
that goes away under a running coordinator (a JSON 503, then recovery)."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import psycopg
import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from rankloop.core.settings import settings_of
from service import logs
from service.app import create_app
from service.models import utcnow
from service.rendering import run_step
from service.sweep import sweep
from tests.fixtures.coordinator import Owner, bearer, make_app, render_round


def samples(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def rank_all(app: Flask, tokens: list[str]) -> None:
    client = app.test_client()
    for token in tokens:
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        order = {"order": [i["id"] for i in task["images"]]}
        url = f"/api/tasks/{task['task_id']}/ranking"
        assert client.post(url, json=order, headers=bearer(token)).status_code == 201


def test_metrics_count_rounds_rankings_renders_and_errors(app, owner: Owner):
    cid = owner.campaign(start=True)["id"]
    before = samples(app)
    assert before[("rankloop_rounds", (("status", "rendering"),))] == 1
    render_round(app, cid, 0)
    rank_all(app, owner.annotators(cid, 2))  # the quorum: round 0 closes, round 1 renders
    assert owner.get("/api/campaigns/nope").status_code == 404
    after = samples(app)
    assert after[("rankloop_rankings_total", ())] == 2
    assert after[("rankloop_metrics_database_up", ())] == 1
    assert after[("rankloop_rounds", (("status", "closed"),))] == 1
    assert after[("rankloop_rounds", (("status", "rendering"),))] == 1
    assert after[("rankloop_rounds", (("status", "open"),))] == 0
    assert after[("rankloop_round_oldest_age_seconds", (("status", "open"),))] == 0
    assert after[("rankloop_campaigns", (("status", "running"),))] == 1
    # render_round reports 0.01 s: one render, in the first bucket
    assert after[("rankloop_render_seconds_count", ())] == 1
    assert after[("rankloop_render_seconds_sum", ())] == pytest.approx(0.01)
    assert after[("rankloop_render_seconds_bucket", (("le", "1.0"),))] == 1
    not_found = ("endpoint", "/api/campaigns/<campaign_id>"), ("status", "404")
    assert after[("rankloop_http_responses_total", not_found)] == 1


def test_metrics_answer_200_without_the_database(tmp_path):
    """PostgreSQL unreachable: /metrics still serves what the process knows (its response
    counts, the render workers), marks the database down and leaves out what only it knows."""
    dead = create_app({"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
                       "STORE_URL": str(tmp_path / "objects"), "BROKER_URL": "memory://"})  # fmt: skip
    client = dead.test_client()
    assert client.get("/api/campaigns/nope").status_code == 401  # no database needed for that
    found = samples(dead)
    assert found[("rankloop_metrics_database_up", ())] == 0
    unauthorized = ("endpoint", "/api/campaigns/<campaign_id>"), ("status", "401")
    assert found[("rankloop_http_responses_total", unauthorized)] == 1
    assert found[("rankloop_render_workers", (("route", "same"),))] == 0
    from_the_database = ("rankloop_rounds", "rankloop_campaigns", "rankloop_rankings_total",
                         "rankloop_round_oldest_age_seconds", "rankloop_render_seconds_count")  # fmt: skip
    assert not [key for key in found if key[0] in from_the_database]
    # (and readiness still names the database)
    assert "database" in client.get("/readyz").json["failed"]


def test_queue_depths_on_redis_under_the_brokers_key_prefix(tmp_path, redis_url, redis_prefix):
    """The render and bookkeeping queues' depths on a Redis broker: the lengths of the lists
    kombu keeps them in (a priority's list included), under this deployment's key prefix, and
    never another prefix's."""
    import redis

    prefix = f"{redis_prefix}depth:"
    options = {"global_keyprefix": prefix}
    app = make_app(tmp_path, BROKER_URL=redis_url, BROKER_TRANSPORT_OPTIONS=options)
    neighbour = make_app(tmp_path / "other", BROKER_URL=redis_url,
                         BROKER_TRANSPORT_OPTIONS={"global_keyprefix": f"{redis_prefix}other:"})  # fmt: skip
    gpu, coord = (
        ("rankloop_queue_depth", (("queue", "gpu"),)),
        ("rankloop_queue_depth", (("queue", "coord"),)),
    )
    found = samples(app)
    assert (found[gpu], found[coord]) == (0, 0)  # nothing sent yet: empty, not absent
    celery = app.extensions["celery"]
    for priority in (None, None, 9):
        celery.send_task("rankloop.test_depth", args=[1], queue="gpu", priority=priority)
    celery.send_task("rankloop.test_depth", args=[1], queue="coord")
    neighbour.extensions["celery"].send_task("rankloop.test_depth", args=[1], queue="gpu")
    found = samples(app)
    assert (found[gpu], found[coord]) == (3, 1)
    assert samples(neighbour)[gpu] == 1
    client = redis.Redis.from_url(redis_url)
    keys = [k for p in ("depth", "other") for k in client.scan_iter(match=f"{redis_prefix}{p}:*")]
    assert f"{prefix}gpu\x06\x169".encode() in keys  # (the priority's own list)
    client.delete(*keys)


def test_a_stuck_render_shows_its_age_and_reason_and_the_audit_log(app, owner: Owner):
    cid = owner.campaign(start=True, render_timeout_s=60)["id"]
    later = utcnow() + dt.timedelta(seconds=120)
    with app.app_context():
        run_step(sweep, later, app=app)  # the render never came back: sent again
        run_step(sweep, later + dt.timedelta(seconds=120), app=app)
    current = owner.get(f"/api/campaigns/{cid}").json["current_round"]
    assert current["status"] == "rendering"
    assert current["problem"] == "render re-sent x2"
    # Its age counts from the last send, as the metric's does.
    age = samples(app)[("rankloop_round_oldest_age_seconds", (("status", "rendering"),))]
    assert current["age_s"] >= 0 and age >= current["age_s"]
    page = owner.get(f"/api/campaigns/{cid}/events?limit=2").json
    assert [e["kind"] for e in page["events"]] == ["round_render_resent"] * 2
    assert page["next_offset"] == 2 and page["events"][0]["round"] == 0
    rest = owner.get(f"/api/campaigns/{cid}/events?offset=2").json
    kinds = [e["kind"] for e in rest["events"]]
    assert kinds[-1] == "campaign_created" and "campaign_started" in kinds
    assert rest["next_offset"] is None
    stranger = app.test_client().get(f"/api/campaigns/{cid}/events")
    assert stranger.status_code == 401


def test_healthz_is_alive_while_readyz_names_what_is_down(tmp_path):
    app = make_app(tmp_path, BROKER_URL="redis://127.0.0.1:9/0")  # nothing listens there
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    body = response.json
    assert body["status"] == "unavailable"
    assert body["failed"] == ["broker", "migrations"]  # create_all: no Alembic revision
    assert body["checks"]["database"] == {"ok": True, "error": None}
    assert "rankloop db upgrade" in body["checks"]["migrations"]["error"]
    # The database itself gone: healthz does not care.
    dead = create_app({"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
                       "STORE_URL": str(tmp_path / "objects"), "BROKER_URL": "memory://"})  # fmt: skip
    assert dead.test_client().get("/healthz").status_code == 200
    down = dead.test_client().get("/readyz").json
    assert {"database", "migrations"} <= set(down["failed"])


def _terminate_connections(url: str) -> int:
    name = url.rsplit("/", 1)[-1]
    admin = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchall()
    return len(rows)


def test_a_lost_database_connection_is_a_json_503_then_recovers(tmp_path, postgres_url):
    app = make_app(tmp_path, postgres_url)
    owner = Owner(app.test_client())
    cid = owner.campaign(start=True, annotators_per_round=3)["id"]
    render_round(app, cid, 0)
    (token,) = owner.annotators(cid, 1)
    client = app.test_client()
    assert client.get("/api/me", headers=bearer(token)).status_code == 200  # a pooled connection
    assert _terminate_connections(postgres_url) >= 1  # what a PostgreSQL restart does to them
    response = client.get("/api/tasks/next", headers=bearer(token))
    assert response.status_code == 503, response.data[:300]
    assert response.json["error"]["code"] == "database_unavailable"
    assert response.headers["Retry-After"] == "2"
    # The dead connection was thrown away: the next request is served.
    assert client.get("/api/tasks/next", headers=bearer(token)).status_code == 200
    assert _terminate_connections(postgres_url) >= 1  # and on an ORM path (owner endpoint)
    statuses = [owner.get(f"/api/campaigns/{cid}").status_code for _ in range(2)]
    assert statuses[0] in (200, 503) and statuses[-1] == 200


def test_request_ids_and_json_log_lines(sqlite_app: Flask):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    sqlite_app.logger.addHandler(handler)
    try:
        client = sqlite_app.test_client()
        sent = client.get("/readyz", headers={"X-Request-Id": "probe-1"})  # logs its failure
        assert sent.headers["X-Request-Id"] == "probe-1"
        made = client.get("/healthz", headers={"X-Request-Id": "not an id"}).headers
        assert made["X-Request-Id"] != "not an id" and len(made["X-Request-Id"]) == 16
        with logs.bind(campaign_id="c1", round=3):
            sqlite_app.logger.warning("round %s stuck", 3)
    finally:
        sqlite_app.logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["request_id"] == "probe-1" and lines[0]["level"] == "WARNING"
    assert lines[-1]["message"] == "round 3 stuck"
    assert (lines[-1]["campaign_id"], lines[-1]["round"]) == ("c1", 3)
    assert "request_id" not in lines[-1]


def test_render_workers_on_another_route_are_reported_on_the_waiting_round(app, owner: Owner):
    """Worker heartbeats (rankloop.core.liveness) that all name another key prefix: the sweep
    says so on the round that waits (once), and /metrics counts them; a stale heartbeat or one
    on the coordinator's own route is no mismatch."""
    import time

    from rankloop.core.liveness import render_route, worker_beat_key
    from service import health

    cid = owner.campaign(start=True)["id"]
    store = app.extensions["rankloop_store"]
    route = render_route(settings_of(app))

    def beat(worker: str, age_s: float = 0.0, **changes: str) -> None:
        body = {"at": time.time() - age_s, "worker": worker, "route": {**route, **changes}}
        store.put(worker_beat_key(worker), json.dumps(body).encode())
        health._census.clear()  # read the store again, not the last few seconds' census

    beat("old@host", age_s=120)  # gone: ignored
    beat("ancient@host", age_s=2 * 24 * 3600)  # gone for days: its file is deleted
    beat("w1@host", keyprefix="elsewhere:")
    later = utcnow() + dt.timedelta(seconds=20)  # sent, and no round heartbeat since
    with app.app_context():
        run_step(sweep, later, app=app)
        run_step(sweep, later + dt.timedelta(seconds=5), app=app)
    problem = owner.get(f"/api/campaigns/{cid}").json["current_round"]["problem"]
    assert problem.startswith("render pickup failed x1;")
    assert "w1@host" in problem and "'elsewhere:'" in problem and "old@host" not in problem
    assert not store.exists(worker_beat_key("ancient@host"))
    assert store.exists(worker_beat_key("old@host"))  # kept a day: a worker may come back
    found = samples(app)
    assert found[("rankloop_render_workers", (("route", "other"),))] == 1
    assert found[("rankloop_render_workers", (("route", "same"),))] == 0

    beat("w2@host")  # one worker on the coordinator's route: renders are read
    with app.app_context():
        assert health.render_workers().mismatch is None
        assert [w["worker"] for w in health.render_workers().same] == ["w2@host"]


def test_a_render_stall_is_said_by_readyz_and_metrics_without_a_503(app, owner: Owner):
    """Issue 23: a round stalled for want of a render worker left /readyz at 200 saying
    nothing. Readiness still answers 200 (every web process out of the load balancer because the
    GPU tier is gone would be a full outage: annotators of open rounds could not submit), and
    its body and rankloop_renders_stalled say the stall; a render worker beating ends it."""
    import time

    from rankloop.core.liveness import render_route, worker_beat_key
    from service import health
    from service.db import session_scope
    from service.models import Round
    from tests.fixtures.coordinator import stamp_head

    stamp_head(app)
    cid = owner.campaign(start=True)["id"]
    client = app.test_client()
    fresh = client.get("/readyz")
    assert fresh.status_code == 200
    renders = fresh.json["renders"]
    assert renders["waiting"] == 1 and renders["render_workers"] == 0
    assert renders["stalled"] == 0  # sent just now: no stall yet
    with app.app_context(), session_scope(app) as session:
        waiting = session.query(Round).filter_by(campaign_id=cid).one()
        waiting.render_enqueued_at = utcnow() - dt.timedelta(seconds=45)  # past 10 s
        session.commit()
    stalled = client.get("/readyz")
    assert stalled.status_code == 200 and stalled.json["status"] == "ready"
    assert stalled.json["renders"]["stalled"] == 1 and stalled.json["renders"]["oldest_s"] >= 45
    assert samples(app)[("rankloop_renders_stalled", ())] == 1

    body = {"at": time.time(), "worker": "gpu@host", "route": render_route(settings_of(app))}
    app.extensions["rankloop_store"].put(worker_beat_key("gpu@host"), json.dumps(body).encode())
    health._census.clear()
    renders = client.get("/readyz").json["renders"]
    assert renders["render_workers"] == 1 and renders["stalled"] == 0
    assert samples(app)[("rankloop_renders_stalled", ())] == 0
