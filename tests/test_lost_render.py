"""A render whose message the broker lost (a Redis restart without persistence) is sent again
by the sweep within ``render_lost_after_s``, never while the broker still holds it; the owner
sees why on the round, and the operator in ``rankloop_renders_resent_total{reason}``. The
broker's own view (``jobs.render_jobs_held``) is faked here; ``tests/test_faults_services.py``
reads a real Redis, and restarts one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import pytest
from flask import Flask

from service import jobs, sweep
from service.models import utcnow
from service.rendering import run_step
from tests.fixtures.coordinator import Owner
from tests.test_health_metrics import samples


def broker_holds(monkeypatch: pytest.MonkeyPatch, answer: set[str] | None) -> list:
    """The broker answers ``answer`` (None: it cannot say); the job ids asked, per call."""
    asked: list = []

    def held(app: Flask, job_ids: Collection[str]) -> set[str] | None:
        asked.append(sorted(job_ids))
        return None if answer is None else answer & set(job_ids)

    monkeypatch.setattr(sweep, "render_jobs_held", held)
    return asked


def resent(app: Flask, cid: str, seconds: float) -> list[str]:
    with app.app_context():
        outcome = run_step(sweep.sweep, utcnow() + dt.timedelta(seconds=seconds), app=app)
    return [f"{m.campaign_id}/{m.round_number}" for m in outcome.renders]


def test_a_render_the_broker_lost_is_sent_again_and_shown(app, owner: Owner, monkeypatch):
    cid = owner.campaign(start=True)["id"]
    asked = broker_holds(monkeypatch, set())  # the queue and the unacked messages: empty
    # Not before render_lost_after_s (10 s): the broker is not even asked.
    assert resent(app, cid, 5) == [] and asked == []
    assert resent(app, cid, 40) == [f"{cid}/0"]
    assert len(asked) == 1 and asked[0][0].startswith(f"render-{cid}-0000-")
    current = owner.get(f"/api/campaigns/{cid}").json["current_round"]
    assert current["status"] == "rendering"
    assert (
        current["problem"]
        == f"render re-sent x1; last error: round_render_resent: {sweep.LOST_BY_BROKER}"
    )
    events = owner.get(f"/api/campaigns/{cid}/events").json["events"]
    assert events[0]["kind"] == "round_render_resent"
    assert events[0]["data"]["reason"] == "not_queued"
    metric = samples(app)
    assert metric[("rankloop_renders_resent_total", (("reason", "not_queued"),))] == 1
    # The re-sent render is new: not asked about again before its own render_lost_after_s.
    assert resent(app, cid, 5) == [] and len(asked) == 1


@pytest.mark.parametrize("answer", ["queued", None], ids=["held", "cannot-say"])
def test_a_render_the_broker_holds_or_cannot_see_waits_for_the_timeout(
    app, owner: Owner, monkeypatch, answer
):
    """A render waiting behind others (or unacknowledged: a worker took it), or on a broker
    that cannot say (RabbitMQ, whose queues survive restarts): only render_timeout_s sends it
    again, with its reason."""
    cid = owner.campaign(start=True, render_timeout_s=600)["id"]
    asked = broker_holds(monkeypatch, None)
    if answer == "queued":
        with app.app_context():
            from service.db import session_scope
            from service.models import Round

            with session_scope(app) as session:
                job = session.query(Round).filter_by(campaign_id=cid).one().render_task_id
        asked = broker_holds(monkeypatch, {job})
    for seconds in (40, 200, 590):
        assert resent(app, cid, seconds) == []
    assert len(asked) == 3
    assert resent(app, cid, 610) == [f"{cid}/0"]
    metric = samples(app)
    assert metric[("rankloop_renders_resent_total", (("reason", "timeout"),))] == 1
    assert ("rankloop_renders_resent_total", (("reason", "not_queued"),)) not in metric


@pytest.mark.parametrize("stamped", [False, True], ids=["never-sent", "stamped-for-a-send"])
def test_a_render_whose_sender_died_is_sent_within_render_lost_after_s(
    app, owner: Owner, monkeypatch, stamped: bool
):
    """The web process that made a round (the close of the round before it, in the request that
    brought its quorum) was killed between that commit and the render's send; or one that gave
    a freed render slot to a waiting render (stamped sent, service.render_sending._take_slot)
    was killed before that send. The render, which never left, goes out at the first sweep
    render_lost_after_s after, on any broker (it waited 30 s, or render_timeout_s when stamped:
    every annotator of the campaign without work meanwhile, tests/test_faults_web.py's repeated
    gunicorn kills)."""
    from sqlalchemy import update

    from service.db import session_scope
    from service.models import Round

    cid = owner.campaign(start=True)["id"]
    asked = broker_holds(monkeypatch, None)  # a broker that cannot say: not what decides here
    with app.app_context(), session_scope(app) as session:
        session.execute(  # as the dead sender left it: committed, its job never recorded
            update(Round)
            .where(Round.campaign_id == cid)
            .values(render_enqueued_at=utcnow() if stamped else None, render_task_id=None)
        )
        session.commit()
        lost_after = sweep.lost_after().total_seconds()
    assert lost_after == 10.0  # the setting's default
    assert resent(app, cid, lost_after - 1) == []  # its sender may still be sending it
    assert resent(app, cid, lost_after + 1) == [f"{cid}/0"]
    events = owner.get(f"/api/campaigns/{cid}/events").json["events"]
    assert events[0]["kind"] == "round_render_resent"
    assert events[0]["data"]["reason"] == "unsent"
    assert asked == []  # never sent: nothing to ask the broker about
    # Sent now: not again before its own render_lost_after_s.
    assert resent(app, cid, 5) == []


def test_a_render_whose_worker_beats_is_not_asked_of_the_broker(app, owner: Owner, monkeypatch):
    from rankloop.core.contracts import heartbeat_key

    cid = owner.campaign(start=True)["id"]
    asked = broker_holds(monkeypatch, set())
    at = (utcnow() + dt.timedelta(seconds=40)).replace(tzinfo=dt.UTC).timestamp()
    app.extensions["rankloop_store"].put(heartbeat_key(cid, 0), f'{{"at": {at}}}'.encode())
    assert resent(app, cid, 40) == [] and asked == []


def test_only_redis_is_read(tmp_path):
    """RabbitMQ (and the embedded brokers) keep what they queue, and what RabbitMQ holds
    cannot be read without taking it: the broker cannot say, and nothing is re-sent early."""
    from tests.fixtures.coordinator import make_app

    for url in ("amqp://guest:guest@127.0.0.1:1//", "memory://"):
        app = make_app(tmp_path, BROKER_URL=url)
        assert jobs.render_jobs_held(app, ["render-x-0000-abc"]) is None
        assert jobs.render_jobs_held(app, []) == set()
