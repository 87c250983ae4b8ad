"""Faults during a running campaign: a round rendered and accepted once, a transient render
failure that never ends a campaign, a lost render found by its stale heartbeat within seconds
(a render worker killed with kill -9 mid-render: real Redis broker under a private key prefix,
real render and bookkeeping workers, PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from sqlalchemy import func, select

from gpu_worker.render import render_round
from rankloop.core.contracts import (
    PERMANENT_RENDER_ERRORS,
    heartbeat_key,
    render_error_is_permanent,
)
from rankloop.core.storage import round_prefix
from service import db, lifecycle, render_sending, rendering, sweep
from service.models import Campaign, Image, utcnow
from tests.fixtures.fault_stack import SMALL, Stack, events, new_campaign, round_row
from tests.fixtures.private_services import PrivateRedis


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
    assert sweep.sweep(session, utcnow() + dt.timedelta(hours=2)).renders == []


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
    render_sending.mark_enqueued(session, cid, 0, "render-x")
    store = app.extensions["rankloop_store"]
    now = utcnow()
    # The worker beat until its retries ran out, then reported the store error.
    beat = {"at": now.replace(tzinfo=dt.UTC).timestamp(), "worker": "w1"}
    store.put(heartbeat_key(cid, 0), json.dumps(beat).encode())
    assert rendering.round_failed(session, cid, 0, "StorageError: store down", now)
    assert round_row(session, cid).status == "rendering"
    assert session.get(Campaign, cid).status == "running"
    assert events(session, cid, "round_render_error") == 1

    assert sweep.sweep(session, now + dt.timedelta(seconds=5)).renders == []  # still fresh
    (again,) = sweep.sweep(session, now + dt.timedelta(seconds=16)).renders
    assert (again.campaign_id, again.round_number) == (cid, 0)
    render_sending.mark_enqueued(session, cid, 0, "render-y")  # sent (as run_step sends it)
    # The re-sent render may wait in the queue: no heartbeat yet is not a loss.
    assert not store.exists(heartbeat_key(cid, 0))
    assert sweep.sweep(session, now + dt.timedelta(seconds=60)).renders == []

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
        # The worker's model list holds the folder below, so its load is what fails.
        nowhere = tmp_path / "no-pipeline-here"
        stack.worker("gpu_worker.celery_app", RANKLOOP_MODELS=str(nowhere))
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
        # leaves the error's class in the round's heartbeat for the coordinator. (A model the
        # worker cannot load: valid settings, refused only where the model is loaded.)
        nowhere.mkdir()
        bad = stack.start_campaign(generator="diffusers", model=str(nowhere))
        deadline = time.monotonic() + 60
        with stack.app.app_context():
            while True:
                with db.session_scope() as session:
                    campaign = session.get(Campaign, bad)
                    if campaign.status == "failed":
                        assert campaign.error.startswith("round 0: ModelUnavailable")
                        assert "on the model list but does not load" in campaign.error
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
