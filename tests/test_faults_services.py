"""Dependencies restarted under a running campaign, on private instances (other ports; the
machine's shared servers are never touched): PostgreSQL, Redis, the object store; and a
bookkeeping worker killed mid-task. Each test reports its recovery time (printed, and written
as JSON under ``$RANKLOOP_BENCH_OUT`` or the temporary directory).

"Work again" means what an annotator sees: ``/api/tasks/next`` answers 200 with a task.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from rankloop.core.contracts import ROUND_RENDERED_TASK
from service import db, jobs, rendering, sweep
from service.models import Campaign
from tests.fixtures.coordinator import ADMIN, bearer
from tests.fixtures.fault_stack import Stack, round_row
from tests.fixtures.private_services import (
    PrivatePostgres,
    PrivateRedis,
    PrivateSeaweed,
    report_recovery,
)

WORK_AGAIN_BOUND_S = 60.0  # the target, after any single fault
# After the store is back: the issue measured 18 s; the worker retried up to 15 s apart then.
STORE_BACK_BOUND_S = 12.0


def annotators(client: FlaskClient, cid: str, count: int) -> list[str]:
    response = client.post(
        f"/api/campaigns/{cid}/annotators",
        json={"count": count},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 201, response.json
    return [a["token"] for a in response.json["annotators"]]


def rank(client: FlaskClient, token: str) -> int:
    """Fetch a task and rank it (in the order shown); the ranking's status."""
    task = client.get("/api/tasks/next", headers=bearer(token))
    assert task.status_code == 200, task.data[:300]
    order = {"order": [image["id"] for image in task.json["images"]]}
    url = f"/api/tasks/{task.json['task_id']}/ranking"
    return client.post(url, json=order, headers=bearer(token)).status_code


def sweep_quietly(stack: Stack) -> None:
    """Beat's job, once; while a dependency is down it fails, as beat's sweep would."""
    try:
        rendering.run_step(sweep.sweep, app=stack.app)
    except Exception as error:  # the database down: beat's next tick tries again
        print(f"sweep failed: {type(error).__name__}")


def work_again(
    stack: Stack, client: FlaskClient, token: str, since: float, sweeping: bool = True
) -> tuple[float, list]:
    """Poll ``/api/tasks/next`` as an idle annotator (and run the sweep each second, unless
    not ``sweeping``) until it answers a task: the seconds since ``since`` and every status
    seen (with Retry-After)."""
    seen: list = []
    with stack.app.app_context():
        while True:
            response = client.get("/api/tasks/next", headers=bearer(token))
            seen.append((response.status_code, response.headers.get("Retry-After")))
            if response.status_code == 200:
                return time.monotonic() - since, seen
            assert response.status_code in (204, 503), response.data[:500]
            assert time.monotonic() - since < WORK_AGAIN_BOUND_S, (seen, stack.logs())
            if sweeping:
                sweep_quietly(stack)
            time.sleep(1.0)


def store_retries(stack: Stack) -> int:
    """The times the last render worker put a render off for an object store error (its log)."""
    return stack.workers[-1].log_text().count("object store error (retry in")


@pytest.fixture
def private_postgres():
    server = PrivatePostgres()
    server.start()
    yield server
    server.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_postgresql_restart_while_a_round_renders(private_postgres, redis_url, tmp_path: Path):
    """PostgreSQL stops while round 1 renders and starts again 10 s later: /api/tasks/next
    answers 503 with Retry-After meanwhile (never 500), the render's result waits for the
    database (the bookkeeping job retries), and annotators have work again within 60 s, the
    round opened once."""
    stack = Stack(tmp_path, private_postgres.url, redis_url, DATABASE_POOL_SIZE=2)
    try:
        stack.worker("gpu_worker.celery_app")
        cid = stack.start_campaign(delay_s=0.0, annotators_per_round=2)
        stack.wait_open(cid, time.monotonic(), number=0)
        with stack.app.app_context(), db.session_scope() as session:
            campaign = session.get_one(Campaign, cid)
            # Round 1 pauses 3 s between its images and its manifest: the restart lands there.
            campaign.settings = {**campaign.settings, "test_delay_s": 3.0}
            session.commit()
        client = stack.app.test_client()
        first, second, idle = annotators(client, cid, 3)
        assert [rank(client, first), rank(client, second)] == [201, 201]  # round 0 closes
        stack.wait_mid_render(cid, number=1)

        private_postgres.stop()
        down = time.monotonic()
        during: list = []
        while time.monotonic() - down < 10.0:  # the render ends meanwhile
            response = client.get("/api/tasks/next", headers=bearer(idle))
            during.append((response.status_code, response.headers.get("Retry-After")))
            time.sleep(0.5)
        private_postgres.start()
        up = time.monotonic()
        recovered, after = work_again(stack, client, idle, up)

        stack.check_opened_once(cid, number=1)
        with stack.app.app_context(), db.session_scope() as session:
            assert round_row(session, cid, 1).status == "open"
        kinds = stack.events(cid)
        renders = stack.renders_received()
        retries = stack.workers[0].log_text().count("database unavailable (retry in")
    finally:
        stack.close()
    statuses = Counter(status for status, _ in during + after)
    assert all(status == 503 and retry for status, retry in during), during
    assert 500 not in statuses
    report_recovery(
        "fault_postgresql_restart",
        {"work_again_after_restart_s": round(recovered, 1),
         "work_again_after_stop_s": round(up - down + recovered, 1),
         "statuses": dict(statuses), "renders_received": renders,
         "resent": kinds.count("round_render_resent"), "bookkeeping_retries": retries},
    )  # fmt: skip
    assert renders == 2 + kinds.count("round_render_resent")  # round 0, round 1 (+ resends)


def rankings_per_round(stack: Stack, cids: list[str]) -> dict[tuple[str, int], int]:
    from sqlalchemy import func, select

    from service.models import Ranking, Round

    with stack.app.app_context(), db.session_scope() as session:
        rows = session.execute(
            select(Round.campaign_id, Round.number, func.count(Ranking.id))
            .join(Ranking, Ranking.round_id == Round.id)
            .where(Round.campaign_id.in_(cids))
            .group_by(Round.campaign_id, Round.number)
        ).all()
    return {(cid, number): count for cid, number, count in rows}


def campaign_statuses(stack: Stack, cids: list[str]) -> list[str]:
    with stack.app.app_context(), db.session_scope() as session:
        return [session.get_one(Campaign, cid).status for cid in cids]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_redis_restart_with_renders_queued(postgres_url, tmp_path: Path):
    """A private Redis (broker, result backend and shared rate limits) restarts while one render
    runs and two wait in the queue: no campaign fails, every campaign's first round opens
    (annotators have work again within 60 s), /api/tasks/next never answers 500, and no round
    is leased or closed beyond its quorum."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    stack = None
    try:
        stack = Stack(
            tmp_path, postgres_url, server.url,
            RATELIMIT_ANNOTATOR_SCOPE="shared", RATELIMIT_STORAGE_URI=server.url,
        )  # fmt: skip
        stack.worker("gpu_worker.celery_app")
        cids = [stack.start_campaign(delay_s=1.0, annotators_per_round=2) for _ in range(3)]
        client = stack.app.test_client()
        tokens = {cid: annotators(client, cid, 3) for cid in cids}
        stack.wait_mid_render(cids[0])

        server.stop()
        down = time.monotonic()
        during = [client.get("/api/tasks/next", headers=bearer(tokens[cids[-1]][0])).status_code]
        time.sleep(3.0)
        server.start()
        up = time.monotonic()
        seen: list = []
        for cid in cids:  # each campaign's first annotator waits for work
            _, statuses = work_again(stack, client, tokens[cid][0], up)
            seen += statuses
        recovered = time.monotonic() - up

        # Three annotators for a quorum of two: two leases, the third waits.
        for cid in cids:
            leased = [client.get("/api/tasks/next", headers=bearer(t)) for t in tokens[cid]]
            assert [r.status_code for r in leased] == [200, 200, 204], [r.data for r in leased]
            for token, task in zip(tokens[cid][:2], leased[:2], strict=True):
                order = {"order": [image["id"] for image in task.json["images"]]}
                url = f"/api/tasks/{task.json['task_id']}/ranking"
                assert client.post(url, json=order, headers=bearer(token)).status_code == 201
        counts = rankings_per_round(stack, cids)
        statuses_now = campaign_statuses(stack, cids)
        with stack.app.app_context(), db.session_scope() as session:
            closed = [round_row(session, cid, 0).status for cid in cids]
        kinds = [kind for cid in cids for kind in stack.events(cid)]
    finally:
        if stack is not None:
            stack.close()
        server.stop()
    assert 500 not in during + [status for status, _ in seen]
    assert statuses_now == ["running"] * len(cids)
    assert closed == ["closed"] * len(cids)
    assert all(count <= 2 for count in counts.values()), counts
    report_recovery(
        "fault_redis_restart",
        {"work_again_after_restart_s": round(recovered, 1),
         "outage_s": round(up - down, 1), "campaigns": len(cids),
         "statuses": dict(Counter([*during, *(s for s, _ in seen)])),
         "resent": kinds.count("round_render_resent"),
         "renders_received": stack.renders_received()},
    )  # fmt: skip
    assert recovered < WORK_AGAIN_BOUND_S


def object_versions(stack: Stack, cid: str, number: int) -> dict[str, bytes]:
    from rankloop.core.storage import round_prefix

    prefix = round_prefix(cid, number) + "/"
    return {key: stack.store.get(key) for key in stack.store.list(prefix)}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bookkeeping_worker_killed_mid_task(postgres_url, redis_url, tmp_path: Path):
    """kill -9 the bookkeeping worker while it records a round's render (held inside the job by
    a lock on the campaign row): the job is lost with it (Redis would give it back only after
    its visibility timeout), the sweep finds the render's heartbeat stale and sends it again,
    the render worker answers from the stored manifest (nothing is rendered again), and
    another bookkeeping worker opens the round: work again within 60 s."""
    import psycopg

    stack = Stack(tmp_path, postgres_url, redis_url)
    plain_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        stack.worker("gpu_worker.celery_app")
        bookkeeping = stack.workers[0]
        with psycopg.connect(plain_url) as blocker:
            cid = stack.start_campaign(delay_s=0.0)
            # Hold the campaign row: round_rendered (which locks it first) waits inside the job.
            blocker.execute("SELECT id FROM campaigns WHERE id = %s FOR UPDATE", (cid,))
            bookkeeping.wait_for_log(f"Task {ROUND_RENDERED_TASK}[", timeout_s=120)
            time.sleep(0.5)  # the job is past its first statement, waiting on the lock
            rendered = object_versions(stack, cid, 0)
            bookkeeping.kill()
            killed = time.monotonic()
            blocker.rollback()  # the dead worker's transaction ends with its connection
        stack.worker("service.worker", "coord")
        client = stack.app.test_client()
        (token,) = annotators(client, cid, 1)
        recovered, statuses = work_again(stack, client, token, killed)
        stack.check_opened_once(cid)
        kinds = stack.events(cid)
        renders = stack.renders_received()
        after = object_versions(stack, cid, 0)
    finally:
        stack.close()
    assert after == rendered  # not one object of the round written again
    assert 500 not in [status for status, _ in statuses]
    report_recovery(
        "fault_bookkeeping_worker_kill",
        {"work_again_after_kill_s": round(recovered, 1), "renders_received": renders,
         "resent": kinds.count("round_render_resent")},
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_object_store_outage_pauses_a_campaign_which_resumes_by_itself(
    postgres_url, redis_url, tmp_path: Path
):
    """The object store (a private SeaweedFS) goes down mid-render and stays down past the
    render worker's retries: the round stays ``rendering`` (audited ``round_render_error``),
    the campaign stays running, and once the store is back the sweep sends the render again
    and annotators have work within 60 s.

    Here the worker's budget is 5 s (RANKLOOP_STORE_OUTAGE_BUDGET_S: three retries, 1, 2 and
    2 s apart) so that an outage of about 15 s takes the same path (the budget running out while
    the store is down) and the test stays short. The production budget is three and a half
    minutes."""
    weed = PrivateSeaweed(tmp_path / "weed")
    weed.start()
    stack = None
    try:
        stack = Stack(tmp_path, postgres_url, redis_url, store=weed.s3.store_config())
        stack.worker(
            "gpu_worker.celery_app",
            RANKLOOP_STORE_RETRY_EVERY_S="2",
            RANKLOOP_STORE_OUTAGE_BUDGET_S="5",
        )
        cid = stack.start_campaign(delay_s=1.0)
        client = stack.app.test_client()
        (token,) = annotators(client, cid, 1)
        stack.wait_mid_render(cid)

        weed.stop()
        down = time.monotonic()
        seen: list = []
        with stack.app.app_context():
            while "round_render_error" not in stack.events(cid):  # the retries ran out
                assert campaign_statuses(stack, [cid]) == ["running"]
                assert time.monotonic() - down < 60, stack.logs()
                response = client.get("/api/tasks/next", headers=bearer(token))
                seen.append((response.status_code, response.headers.get("Retry-After")))
                sweep_quietly(stack)
                time.sleep(1.0)
        weed.start()
        up = time.monotonic()
        recovered, after = work_again(stack, client, token, up)
        stack.check_opened_once(cid)
        assert campaign_statuses(stack, [cid]) == ["running"]
        kinds = stack.events(cid)
    finally:
        if stack is not None:
            stack.close()
        weed.stop()
    assert 500 not in [status for status, _ in seen + after]
    assert "round_failed" not in kinds and "round_render_resent" in kinds
    report_recovery(
        "fault_object_store_outage",
        {"outage_s": round(up - down, 1), "work_again_after_store_back_s": round(recovered, 1),
         "retry_budget": "5 s: 3 retries, 1, 2, 2 s apart (test worker)",
         "render_errors": kinds.count("round_render_error"),
         "resent": kinds.count("round_render_resent")},
    )  # fmt: skip


# The store stays down until the render worker has put its render off this many times: its 5th
# retry is where the old backoff (1, 2, 4, 8, then 15 s) waited 15 s, so a store back then found
# the render asleep for that long; the retry every store_retry_every_s (3 s) goes on within 3 s.
# About 15 s, well inside the production worker's retry budget (210 s).
STORE_RETRIES_DOWN = 5
# A fixed outage instead, in seconds (RANKLOOP_FAULT_STORE_OUTAGE_S=90 is the issue's).
STORE_OUTAGE_S = os.environ.get("RANKLOOP_FAULT_STORE_OUTAGE_S")


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("sweeping", [True, False], ids=["with-sweep", "retry-alone"])
def test_object_store_outage_within_the_retry_budget(
    postgres_url, redis_url, tmp_path: Path, sweeping: bool
):
    """The object store (a private SeaweedFS) goes down mid-render until the render worker has
    retried STORE_RETRIES_DOWN times (or RANKLOOP_FAULT_STORE_OUTAGE_S), within the production
    render worker's retry budget: once it is back, annotators have work again within seconds. With the sweep running (beat's job, as in production) it sends the render again as
    soon as it reads the stale heartbeat; without it (``retry-alone``) only the worker's own
    retry brings the round back, within store_retry_every_s (3 s; the countdown reached 15 s
    before, and the issue measured 18 s after a 90 s outage). The figures are printed and
    saved; the bound proves the mechanism with room for a loaded machine."""
    weed = PrivateSeaweed(tmp_path / "weed")
    weed.start()
    stack = None
    try:
        stack = Stack(tmp_path, postgres_url, redis_url, store=weed.s3.store_config())
        stack.worker("gpu_worker.celery_app")
        cid = stack.start_campaign(delay_s=1.0)
        client = stack.app.test_client()
        (token,) = annotators(client, cid, 1)
        stack.wait_mid_render(cid)

        weed.stop()
        down = time.monotonic()
        seen: list = []

        def outage_over() -> bool:
            if STORE_OUTAGE_S is not None:
                return time.monotonic() - down >= float(STORE_OUTAGE_S)
            assert time.monotonic() - down < 120, stack.logs()  # (the budget is 210 s)
            return store_retries(stack) >= STORE_RETRIES_DOWN

        with stack.app.app_context():
            while not outage_over():
                response = client.get("/api/tasks/next", headers=bearer(token))
                seen.append((response.status_code, response.headers.get("Retry-After")))
                sweep_quietly(stack)
                time.sleep(1.0)
        weed.start()
        up = time.monotonic()
        recovered, after = work_again(stack, client, token, up, sweeping=sweeping)
        stack.check_opened_once(cid)
        kinds = stack.events(cid)
        renders = stack.renders_received()
        retries = store_retries(stack)
    finally:
        if stack is not None:
            stack.close()
        weed.stop()
    assert 500 not in [status for status, _ in seen + after]
    assert "round_failed" not in kinds
    report_recovery(
        f"fault_object_store_outage_in_budget_{'with_sweep' if sweeping else 'retry_alone'}",
        {"outage_s": round(up - down, 1), "work_again_after_store_back_s": round(recovered, 1),
         "renders_received": renders, "store_retries": retries,
         "resent": kinds.count("round_render_resent")},
    )  # fmt: skip
    assert recovered < STORE_BACK_BOUND_S


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_render_worker_on_another_broker_prefix_is_detected(postgres_url, redis_url, tmp_path):
    """The issue's two env files: the coordinator sends renders under one key prefix, the only
    render worker listens under another. The worker's heartbeat says where it listens; the
    sweep records the mismatch on the waiting round (the owner's API and dashboard show it),
    /metrics counts the worker as on another route; a worker on the right route renders it."""
    import datetime as dt
    import json

    from prometheus_client.parser import text_string_to_metric_families

    from service.health import render_workers
    from service.models import utcnow

    stack = Stack(tmp_path, postgres_url, redis_url)
    owner = {"Authorization": f"Bearer {ADMIN}"}
    try:
        elsewhere = json.dumps({"global_keyprefix": f"{stack.prefix}elsewhere:"})
        stack.worker("gpu_worker.celery_app", RANKLOOP_BROKER_TRANSPORT_OPTIONS=elsewhere)
        deadline = time.monotonic() + 30
        with stack.app.app_context():
            while not render_workers().other:
                assert time.monotonic() < deadline, stack.logs()
                time.sleep(0.5)
            assert render_workers().same == []
        cid = stack.start_campaign()
        with stack.app.app_context():
            rendering.run_step(sweep.sweep, utcnow() + dt.timedelta(seconds=20), app=stack.app)
        client = stack.app.test_client()
        current = client.get(f"/api/campaigns/{cid}", headers=owner).json["current_round"]
        assert current["status"] == "rendering"
        assert "no render worker reads this coordinator's renders" in current["problem"]
        assert "elsewhere" in current["problem"]
        scraped = client.get("/metrics").text
        workers = {
            s.labels["route"]: s.value
            for family in text_string_to_metric_families(scraped)
            for s in family.samples
            if s.name == "rankloop_render_workers"
        }
        assert workers == {"same": 0.0, "other": 1.0}

        stack.worker("gpu_worker.celery_app")  # the coordinator's route: the render goes on
        stack.wait_open(cid, time.monotonic(), bound_s=60)
        stack.check_opened_once(cid)
    finally:
        stack.close()


LOST_RENDER_BOUND_S = 120.0  # far below render_timeout_s (900 s), the stall before the fix


def queued_job(stack: Stack, cid: str) -> str:
    """The job id of round 0's render, once it was sent."""
    with stack.app.app_context(), db.session_scope() as session:
        row = round_row(session, cid)
        assert row.render_enqueued_at is not None and row.render_task_id, stack.logs()
        return row.render_task_id


def resent_reasons(stack: Stack, cid: str) -> list[str]:
    from sqlalchemy import select

    from service.models import AuditEvent

    with stack.app.app_context(), db.session_scope() as session:
        data = session.scalars(
            select(AuditEvent.data)
            .where(AuditEvent.campaign_id == cid, AuditEvent.kind == "round_render_resent")
            .order_by(AuditEvent.id)
        ).all()
    return [(d or {}).get("reason", "") for d in data]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_render_lost_with_redis_without_persistence_is_sent_again(postgres_url, tmp_path: Path):
    """No render worker, one render queued, then a private Redis without persistence restarts:
    the message is gone. Once a render worker runs, the round opens within seconds of
    render_lost_after_s (not after render_timeout_s), the owner sees why on the round, and the
    round is rendered exactly once (the lost message never reached a worker)."""
    server = PrivateRedis(tmp_path / "redis", persistent=False)
    server.start()
    stack = None
    problems: list[str] = []
    try:
        stack = Stack(tmp_path, postgres_url, server.url)
        cid = stack.start_campaign(delay_s=2.0)
        job = queued_job(stack, cid)
        with stack.app.app_context():
            assert jobs.render_jobs_held(stack.app, [job]) == {job}
            sweep_quietly(stack)  # queued, however long: never sent again
        server.stop()
        server.start()
        restarted = time.monotonic()
        with stack.app.app_context():
            assert jobs.render_jobs_held(stack.app, [job]) == set()  # lost with the restart
        stack.worker("gpu_worker.celery_app")
        client = stack.app.test_client()
        owner = {"Authorization": f"Bearer {ADMIN}"}
        with stack.app.app_context():
            while True:  # beat's job every second; what the owner sees meanwhile
                current = client.get(f"/api/campaigns/{cid}", headers=owner).json["current_round"]
                if current["status"] == "open":
                    break
                assert current["status"] == "rendering", current
                if current["problem"]:
                    problems.append(current["problem"])
                assert time.monotonic() - restarted < LOST_RENDER_BOUND_S, stack.logs()
                sweep_quietly(stack)
                time.sleep(1.0)
        stalled = time.monotonic() - restarted
        problem = current["problem"]
        stack.check_opened_once(cid)
        reasons = resent_reasons(stack, cid)
        received = stack.renders_received()
        metric = client.get("/metrics").text
    finally:
        if stack is not None:
            stack.close()
        server.stop()
    assert reasons == ["not_queued"]
    assert problem and "render re-sent x1" in problem and sweep.LOST_BY_BROKER in problem
    assert received == 1  # the re-sent message only: one render, one result
    assert 'rankloop_renders_resent_total{reason="not_queued"} 1.0' in metric
    report_recovery(
        "fault_redis_lost_render",
        {"round_open_after_restart_s": round(stalled, 1), "renders_received": received,
         "problem_seen_while_rendering": any(sweep.LOST_BY_BROKER in p for p in problems)},
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_render_held_by_redis_is_not_sent_again(postgres_url, redis_url, tmp_path: Path):
    """Past render_lost_after_s with no worker: a render still on the queue, or taken by a
    worker and not yet acknowledged, is not sent again; the same render gone from both is."""
    import datetime as dt
    import json

    import redis

    from service.models import utcnow

    stack = Stack(tmp_path, postgres_url, redis_url)
    try:
        cid = stack.start_campaign()
        job = queued_job(stack, cid)
        later = utcnow() + dt.timedelta(seconds=120)  # past 10 s, far before render_timeout_s
        client = redis.Redis.from_url(redis_url)
        queue, unacked = f"{stack.prefix}gpu", f"{stack.prefix}unacked"
        with stack.app.app_context():
            assert rendering.run_step(sweep.sweep, later, app=stack.app).renders == []
            # A worker took it (kombu moves it from the list into the unacked hash).
            raw = client.rpop(queue)
            assert raw is not None and job.encode() in raw
            client.hset(unacked, "tag-1", json.dumps([json.loads(raw), "", "gpu"]))
            assert rendering.run_step(sweep.sweep, later, app=stack.app).renders == []
            assert queued_job(stack, cid) == job
            client.hdel(unacked, "tag-1")  # and lost it
            again = rendering.run_step(sweep.sweep, later, app=stack.app).renders
            assert [(m.campaign_id, m.round_number) for m in again] == [(cid, 0)]
            new_job = queued_job(stack, cid)
            assert new_job != job and jobs.render_jobs_held(stack.app, [new_job]) == {new_job}
        assert resent_reasons(stack, cid) == ["not_queued"]
    finally:
        stack.close()
