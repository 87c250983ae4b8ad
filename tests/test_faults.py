"""Faults during a running campaign: a round rendered and accepted once, a transient render
failure that never ends a campaign, a lost render found by its stale heartbeat within seconds
(a render worker killed with kill -9 mid-render: real Redis broker under a private key prefix,
real render and bookkeeping workers, PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gpu_worker.render import render_round
from rankloop.core.contracts import (
    PERMANENT_RENDER_ERRORS,
    heartbeat_key,
    render_error_is_permanent,
)
from rankloop.core.storage import round_prefix
from service import closing, db, lifecycle, rendering
from service.models import AuditEvent, Campaign, Image, Round, utcnow
from tests.fixtures.coordinator import _truncate, insert_campaign, make_app
from tests.fixtures.workers import CeleryWorker, start_celery_worker

SMALL = {"m": 4, "width": 64, "height": 64}


new_campaign = functools.partial(insert_campaign, **SMALL)


def events(session, cid: str, kind: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.campaign_id == cid, AuditEvent.kind == kind)
    )


def round_row(session, cid: str, number: int = 0) -> Round:
    session.rollback()
    found = session.scalar(select(Round).where(Round.campaign_id == cid, Round.number == number))
    assert found is not None
    return found


@pytest.fixture
def session(app):
    with app.app_context(), db.session_scope() as s:
        yield s


def test_a_round_rendered_twice_is_accepted_once(app, session):
    """A redelivered render returns the stored manifest, byte for byte; a second result for the
    same round is refused: one set of images, one opened round."""
    cid = new_campaign(session)
    (message,) = lifecycle.start(session, cid).renders
    store = app.extensions["rankloop_store"]
    kwargs = message.model_dump(mode="json")
    first = render_round(store, **kwargs)
    prefix = round_prefix(cid, 0) + "/"
    objects = {key: store.get(key) for key in store.list(prefix)}
    second = render_round(store, **kwargs)  # the same message, delivered again
    assert second == first
    assert {key: store.get(key) for key in store.list(prefix)} == objects  # nothing rewritten

    assert rendering.round_rendered(session, first) is True
    assert rendering.round_rendered(session, second) is False
    assert rendering.round_rendered(session, first) is False
    round_ = round_row(session, cid)
    assert round_.status == "open"
    count = select(func.count()).select_from(Image).where(Image.round_id == round_.id)
    assert session.scalar(count) == len(first["images"]) == SMALL["m"] + 1
    assert events(session, cid, "round_opened") == 1
    # An open round is never sent again by the sweep.
    assert closing.sweep(session, utcnow() + dt.timedelta(hours=2)).renders == []


def test_only_a_permanent_render_error_fails_a_campaign(app, session):
    """A store or broker failure leaves the round rendering and the sweep sends it again once
    the failed render's heartbeat is stale; bad settings, an unknown model or a damaged object
    fail the campaign, and its owner can resume it."""
    assert all(render_error_is_permanent(f"{name}: x") for name in PERMANENT_RENDER_ERRORS)
    for transient in (
        "StorageError: could not reach the object store",
        "OperationalError: Error 111 connecting to 127.0.0.1:6379. Connection refused.",
        "ConnectionResetError: [Errno 104] Connection reset by peer",
        "render job render-x failed; see the GPU worker's log",  # no result backend: unknown
    ):
        assert not render_error_is_permanent(transient), transient

    cid = new_campaign(session, render_timeout_s=600)
    lifecycle.start(session, cid)
    rendering.mark_enqueued(session, cid, 0, "render-x")
    store = app.extensions["rankloop_store"]
    now = utcnow()
    # The worker beat until its retries ran out, then reported the store error.
    beat = {"at": now.replace(tzinfo=dt.UTC).timestamp(), "worker": "w1"}
    store.put(heartbeat_key(cid, 0), json.dumps(beat).encode())
    assert rendering.round_failed(session, cid, 0, "StorageError: store down", now)
    assert round_row(session, cid).status == "rendering"
    assert session.get(Campaign, cid).status == "running"
    assert events(session, cid, "round_render_error") == 1

    assert closing.sweep(session, now + dt.timedelta(seconds=5)).renders == []  # still fresh
    (again,) = closing.sweep(session, now + dt.timedelta(seconds=16)).renders
    assert (again.campaign_id, again.round_number) == (cid, 0)
    # The re-sent render may wait in the queue: no heartbeat yet is not a loss.
    assert not store.exists(heartbeat_key(cid, 0))
    assert closing.sweep(session, now + dt.timedelta(seconds=60)).renders == []

    assert rendering.round_failed(session, cid, 0, "OperationalError: connection refused")
    assert round_row(session, cid).status == "rendering"
    assert rendering.round_failed(session, cid, 0, "ModelUnavailable: no such model")
    assert round_row(session, cid).status == "failed"
    campaign = session.get(Campaign, cid)
    session.refresh(campaign)
    assert campaign.status == "failed" and "no such model" in campaign.error

    failed = {"at": 0, "worker": "w1", "error": "ModelUnavailable: no such model"}
    store.put(heartbeat_key(cid, 0), json.dumps(failed).encode())
    (resent,) = lifecycle.resume(session, cid).renders
    assert resent.round_number == 0
    assert not store.exists(heartbeat_key(cid, 0))  # not taken for a lost render
    session.refresh(campaign)
    assert campaign.status == "running" and round_row(session, cid).status == "rendering"


class Stack:
    """A coordinator app on PostgreSQL, a bookkeeping worker and render workers on a broker
    (Redis under a private key prefix, or RabbitMQ on a private vhost), sharing a local object
    store; the test runs the sweep (beat's job)."""

    def __init__(self, tmp_path: Path, postgres_url: str, broker_url: str, results: bool = True):
        self.tmp_path, self.broker_url = tmp_path, broker_url
        self.prefix = f"rankloop-faults-{uuid.uuid4().hex[:8]}:"
        redis = broker_url.startswith("redis")
        objects = str(tmp_path / "objects")
        options = {"global_keyprefix": self.prefix} if redis else {}
        backend = broker_url if results and redis else None
        self.app = make_app(
            tmp_path,
            postgres_url,
            STORE_URL=objects,
            BROKER_URL=broker_url,
            RESULT_BACKEND=backend,
            BROKER_TRANSPORT_OPTIONS=options,
        )
        _truncate(self.app)
        self.store = self.app.extensions["rankloop_store"]
        self.env = {
            "RANKLOOP_BROKER_URL": broker_url,
            "RANKLOOP_RESULT_BACKEND": backend or "",
            "RANKLOOP_BROKER_TRANSPORT_OPTIONS": json.dumps(options),
            "RANKLOOP_STORE_URL": objects,
            "RANKLOOP_DATABASE_URL": postgres_url,
            "RANKLOOP_VAR_DIR": str(tmp_path / "var"),
            "RANKLOOP_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
        }
        self.workers: list[CeleryWorker] = []
        self.worker("service.worker", "coord")

    def worker(self, app: str, queue: str = "gpu") -> CeleryWorker:
        log_dir = self.tmp_path / f"{queue}{len(self.workers)}"
        self.workers.append(start_celery_worker(app, self.env, log_dir, queues=[queue]))
        return self.workers[-1]

    def start_campaign(self, delay_s: float = 0.0, **settings: object) -> str:
        with self.app.app_context():
            with db.session_scope() as session:
                cid = new_campaign(session)
                campaign = session.get_one(Campaign, cid)
                # test_delay_s: a test hook, a pause between the round's objects and manifest.
                campaign.settings = {**campaign.settings, "test_delay_s": delay_s, **settings}
                session.commit()
            rendering.run_step(lifecycle.start, cid, app=self.app)
        return cid

    def wait_mid_render(self, cid: str) -> None:
        state = f"{round_prefix(cid, 0)}/state.npz"
        deadline = time.monotonic() + 120
        while not (self.store.exists(state) and self.store.exists(heartbeat_key(cid, 0))):
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.1)

    def wait_open(self, cid: str, since: float, bound_s: float = 180) -> float:
        """Seconds from ``since`` until round 0 is open, running the sweep every second."""
        with self.app.app_context():
            while True:
                with db.session_scope() as session:
                    if round_row(session, cid).status == "open":
                        return time.monotonic() - since
                    assert session.get_one(Campaign, cid).status == "running"
                assert time.monotonic() - since < bound_s, self.logs()
                rendering.run_step(closing.sweep, app=self.app)  # beat's job (sends fail quietly)
                time.sleep(1.0)

    def check_opened_once(self, cid: str) -> None:
        with self.app.app_context(), db.session_scope() as session:
            assert events(session, cid, "round_opened") == 1
            assert events(session, cid, "round_failed") == 0
            round_id = round_row(session, cid).id
            count = select(func.count()).select_from(Image).where(Image.round_id == round_id)
            assert session.scalar(count) == SMALL["m"] + 1

    def events(self, cid: str) -> list[str]:
        with self.app.app_context(), db.session_scope() as session:
            query = select(AuditEvent.kind).where(AuditEvent.campaign_id == cid)
            return list(session.scalars(query.order_by(AuditEvent.id)))

    def logs(self) -> str:
        return "\n".join(w.log_text()[-2000:] for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        db.get_engine(self.app).dispose()
        if self.broker_url.startswith("redis"):
            import redis

            client = redis.Redis.from_url(self.broker_url)
            for key in client.scan_iter(match=f"{self.prefix}*", count=500):
                client.delete(key)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_render_worker_killed_mid_render_work_again_within_seconds(
    postgres_url, redis_url, tmp_path
):
    """kill -9 the render worker (its whole process group) inside a round's render: the sweep
    finds the stale heartbeat and sends the render again; another worker renders it and the
    bookkeeping worker opens the round, long before Redis's visibility timeout."""
    stack = Stack(tmp_path, postgres_url, redis_url)
    try:
        recovered, kinds = kill_mid_render(stack)
    finally:
        stack.close()
    assert "round_render_resent" in kinds  # found by the sweep, not by Redis's redelivery
    print(f"\nRedis: render worker killed mid-render, the round open after {recovered:.1f} s")


def kill_mid_render(stack: Stack) -> tuple[float, list[str]]:
    """kill -9 a render worker mid-render and start another: the seconds until the round is
    open (checked opened once), and the campaign's audit events."""
    first = stack.worker("gpu_worker.celery_app")
    cid = stack.start_campaign(delay_s=4.0)
    stack.wait_mid_render(cid)
    first.kill()
    killed = time.monotonic()
    stack.worker("gpu_worker.celery_app")
    recovered = stack.wait_open(cid, killed)
    stack.check_opened_once(cid)
    return recovered, stack.events(cid)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own (append-only file in a temp dir), to restart."""

    def __init__(self, directory: Path):
        self.directory, self.port = directory, free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


OUTAGE_S = 15.0  # longer than kombu rides out when it publishes a result


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_broker_restart_while_a_render_finishes_never_fails_the_campaign(postgres_url, tmp_path):
    """The broker goes down while a round's render runs and comes back a few seconds later:
    the result's hand-off is lost (or reported as a failure), the campaign stays running, the
    sweep sends the render again and the round opens once, with the stored images."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    stack = None
    try:
        # No result backend (it is optional): the worker hands its result straight to the
        # broker, which is down when the render ends.
        stack = Stack(tmp_path, postgres_url, server.url, results=False)
        stack.worker("gpu_worker.celery_app")
        cid = stack.start_campaign(delay_s=1.0)
        stack.wait_mid_render(cid)
        server.stop()
        down = time.monotonic()
        time.sleep(OUTAGE_S)  # the render finishes while the broker is down
        server.start()
        recovered = stack.wait_open(cid, down)
        stack.check_opened_once(cid)
        kinds = stack.events(cid)

        # A permanent error still fails its campaign without a result backend: the worker
        # leaves the error's class in the round's heartbeat for the coordinator.
        bad = stack.start_campaign(generator="stable-nope")
        deadline = time.monotonic() + 60
        with stack.app.app_context():
            while True:
                with db.session_scope() as session:
                    campaign = session.get(Campaign, bad)
                    if campaign.status == "failed":
                        assert campaign.error.startswith("round 0: ModelUnavailable")
                        break
                assert time.monotonic() < deadline, stack.logs()
                time.sleep(0.5)
    finally:
        if stack is not None:
            stack.close()
        server.stop()
    print(
        f"\nbroker down {OUTAGE_S:.0f} s mid-render: the round open after {recovered:.1f} s {kinds}"
    )


@pytest.fixture
def rabbitmq_vhost():
    """A private vhost on the machine's RabbitMQ (127.0.0.1:5672, guest), removed afterwards."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed: no private vhost")
    vhost = f"rankloop-test-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=60, capture_output=True)

    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        ctl("delete_vhost", vhost)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_render_worker_killed_mid_render_on_rabbitmq(postgres_url, rabbitmq_vhost, tmp_path):
    """The same kill on RabbitMQ: a round trip through the broker, render and bookkeeping
    workers, and the killed render's message back within seconds."""
    stack = Stack(tmp_path, postgres_url, rabbitmq_vhost)
    try:
        recovered, kinds = kill_mid_render(stack)
    finally:
        stack.close()
    print(f"\nRabbitMQ: render worker killed mid-render, the round open after {recovered:.1f} s")
    assert kinds.count("round_opened") == 1
