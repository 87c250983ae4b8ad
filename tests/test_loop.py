"""The whole loop against real services: PostgreSQL, Redis, SeaweedFS, real Celery workers
(the GPU worker with the cppn generator, the coordinator's bookkeeping worker), a real HTTP
server and three simulated annotators; and the same through ``rankloop up``."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from rankloop.core.optimizer import VERIFIED
from rankloop.simulation.http_annotators import Http, start_simulated
from service import db
from service.app import create_app
from service.cli import upgrade
from service.models import Campaign, Consensus, Ranking, Round

ADMIN = "loop-admin"
pytestmark = pytest.mark.slow


@pytest.fixture
def loop_database(postgres_url):
    """A fresh PostgreSQL database for the loop, built by the Alembic migrations."""
    base, name = postgres_url.rsplit("/", 1)
    loop_name = f"{name}_loop_{uuid.uuid4().hex[:6]}"
    admin = base.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{loop_name}"')
    url = f"{base}/{loop_name}"
    upgrade(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{loop_name}" WITH (FORCE)')


@pytest.fixture
def own_broker_env(broker_env):
    """The session's Redis broker under a key prefix of this test's own: no task left queued
    by another test (a killed worker's render, say) reaches these workers."""
    options = json.loads(broker_env["RANKLOOP_BROKER_TRANSPORT_OPTIONS"])
    options["global_keyprefix"] += f"loop-{uuid.uuid4().hex[:6]}:"
    return {**broker_env, "RANKLOOP_BROKER_TRANSPORT_OPTIONS": json.dumps(options)}


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_five_rounds_with_three_annotators_on_real_services(
    loop_database, seaweed, own_broker_env, celery_worker_factory
):
    broker_env = own_broker_env
    bucket = seaweed.make_bucket()
    env = {**broker_env, **seaweed.env(bucket), "RANKLOOP_DATABASE_URL": loop_database,
           "RANKLOOP_ADMIN_TOKEN": ADMIN}  # fmt: skip
    gpu = celery_worker_factory(app="gpu_worker.celery_app", env=env, queues=("gpu",))
    coord = celery_worker_factory(app="service.worker", env=env, queues=("coord",))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        app = create_app({"INLINE_BOOKKEEPING": False})  # closing goes through the coord queue
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    owner = Http(base, ADMIN)
    try:
        # No verdict round (its own tests: tests/test_verdict.py): five rounds, all steering.
        status, campaign = owner.request("POST", "/api/campaigns", {
            "prompt": "loop", "generator": "cppn", "m": 4, "annotators_per_round": 3, "rounds": 5,
            "width": 64, "height": 64, "start": True,
            "verdict": False})  # fmt: skip
        assert status == 201, campaign
        cid = campaign["id"]
        status, created = owner.request("POST", f"/api/campaigns/{cid}/annotators", {"count": 3})
        workers = start_simulated(base, [a["token"] for a in created["annotators"]])
        done = _wait(lambda: (d := owner.request("GET", f"/api/campaigns/{cid}")[1])["status"] != "running" and d,
                     180, "the campaign to finish")  # fmt: skip
        for worker in workers:
            worker.stop_event.set()
        assert done["status"] == "finished", (
            done,
            gpu.log_text()[-2000:],
            coord.log_text()[-2000:],
        )
        assert [h["status"] for h in done["history"]] == ["closed"] * 5
        assert all(h["n_rankings"] == 3 and h["agreement"] is not None for h in done["history"])
        assert sum(w.submitted for w in workers) == 15
        with app.app_context(), db.session_scope(app) as session:
            assert session.scalar(select(func.count()).select_from(Ranking)) == 15
            assert session.scalar(select(func.count()).select_from(Consensus)) == 5
            kinds = [r.kind for r in session.scalars(select(Round).order_by(Round.number))]
            assert kinds == [VERIFIED] * 5  # the default schedule: every round can move the best
            rounds_ = session.scalars(select(Round)).all()
            assert all(r.state_key and r.state_key.startswith(f"campaigns/{cid}/") for r in rounds_)
        urls = [h["best_image_url"] for h in done["history"]]
        # Every round also carries the optimizer's current point, rendered clean.
        assert all(h["current_best_url"] for h in done["history"])
        urls += [h["current_best_url"] for h in done["history"]] + [done["current_best_image_url"]]
        urls += [i["url"] for i in done["current_round"]["images"]]
        urls += [i["thumb_url"] for i in done["current_round"]["images"]]
        for url in urls:
            assert url.startswith(seaweed.endpoint_url), url  # presigned by the S3 store
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
                assert body[:4] in (b"\x89PNG", b"RIFF"), url
        export = urllib.request.Request(f"{base}/api/campaigns/{cid}/export?format=jsonl",
                                        headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
        with urllib.request.urlopen(export, timeout=10) as response:
            assert len(response.read().decode().splitlines()) == 15
    finally:
        server.shutdown()
        db.get_engine(app).dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rankloop_up_runs_a_simulated_campaign_to_the_end(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKLOOP_")}
    command = [str(Path(sys.executable).parent / "rankloop"), "up", "--var", str(tmp_path / "var"),
               "--port", str(_free_port()), "--simulate", "3", "--rounds", "3", "--exit-when-done"]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "owner key:" in run.stdout and "/task#token=" in run.stdout
    assert "campaign finished: 3 rounds" in run.stdout
    assert run.stdout.count("best cost") == 3 and "best image cost" in run.stdout
    with sqlite3.connect(tmp_path / "var" / "rankloop.sqlite") as connection:
        assert connection.execute("select count(*) from rankings").fetchone() == (9,)
        assert connection.execute("select count(*) from consensus").fetchone() == (3,)
        assert connection.execute("select status from campaigns").fetchall() == [("finished",)]


def test_a_render_that_fails_is_recorded_on_the_campaign(
    tmp_path, own_broker_env, celery_worker_factory
):
    """Bad settings the coordinator did not see (an unknown optimizer option, stored before the
    API checked options) fail in the GPU worker; its link_error reaches the coord worker, which fails the campaign with the reason."""
    broker_env = own_broker_env
    url = f"sqlite:///{tmp_path / 'coordinator.sqlite'}"
    upgrade(url)
    env = {**broker_env, "RANKLOOP_DATABASE_URL": url, "RANKLOOP_STORE_URL": str(tmp_path / "objects"),
           "RANKLOOP_ADMIN_TOKEN": ADMIN}  # fmt: skip
    celery_worker_factory(app="gpu_worker.celery_app", env=env, queues=("gpu",))
    celery_worker_factory(app="service.worker", env=env, queues=("coord",))
    app = create_app({
        "DATABASE_URL": url, "STORE_URL": env["RANKLOOP_STORE_URL"], "ADMIN_TOKEN": ADMIN,
        "BROKER_URL": broker_env["RANKLOOP_BROKER_URL"],
        "BROKER_TRANSPORT_OPTIONS": json.loads(broker_env["RANKLOOP_BROKER_TRANSPORT_OPTIONS"]),
    })  # fmt: skip
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    created = client.post("/api/campaigns", headers=headers, json={
        "prompt": "x", "generator": "cppn", "m": 4, "width": 64, "height": 64})  # fmt: skip
    assert created.status_code == 201, created.json
    cid = created.json["id"]
    # The API refuses an unknown option at create; a campaign stored before it did is made here.
    with app.app_context(), db.session_scope() as session:
        stored = session.get(Campaign, cid)
        assert stored is not None
        stored.settings = {**stored.settings, "optimizer": {"no_such_option": 1}}
        session.commit()
    assert client.post(f"/api/campaigns/{cid}/start", headers=headers).status_code == 200
    failed = _wait(lambda: (d := client.get(f"/api/campaigns/{cid}", headers=headers).json)["status"] == "failed" and d,
                   60, "the campaign to fail")  # fmt: skip
    assert "no_such_option" in failed["error"]
    assert failed["current_round"]["status"] == "failed"
    db.get_engine(app).dispose()
