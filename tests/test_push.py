"""The stream process (service/push): on PostgreSQL (NOTIFY at commit) and on SQLite
(data_version), a waiting page is told when a round opens and a study's workers when the study
is paused or stopped; the stream process checks the same tickets as the web tier; one process
holds many streams; a revoked token's stream ends; the listener reconnects.

Each test runs the stream process's service on a thread of the test (real HTTP on a free port)
with its sweep (the re-read of every watched state) an hour apart, unless it tests the sweep:
an event that arrives came through the notification path. Streams are read with a generous
socket timeout, never a sleep.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from rankloop.core.settings import settings_of
from service.push.server import Background
from tests.fixtures.coordinator import ADMIN, Owner, bearer, make_app, render_round
from tests.test_studies import join, make_study

WAIT_S = 30.0  # a generous bound on any one event


class Events:
    """An open stream of the stream process, read one event at a time (heartbeats skipped)."""

    def __init__(self, port: int, url: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
        self.connection.request("GET", url)
        self.response = self.connection.getresponse()

    @property
    def status(self) -> int:
        return self.response.status

    def next(self) -> tuple[str, dict[str, Any]]:
        assert self.response.status == 200, self.response.read()
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline().decode()
            if not line:
                raise AssertionError("the stream ended without another event")
            if line.strip() == "":
                if "event" in fields:
                    return fields["event"], json.loads(fields["data"])
                fields = {}
            elif ": " in line and not line.startswith(":"):
                name, value = line.rstrip("\n").split(": ", 1)
                fields[name] = value

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def streams(app: Flask) -> Iterator[Background]:
    """The stream process for ``app``'s database, told only by notifications."""
    settings = settings_of(app).model_copy(update={"push_sweep_s": 3600.0})
    process = Background(settings)
    yield process
    process.stop()


def annotator_ticket(owner: Owner, token: str) -> dict[str, Any]:
    response = owner.client.post("/api/tasks/stream-ticket", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_waiting_annotator_is_told_when_the_round_opens(app, owner, streams):
    cid = owner.campaign(start=True)["id"]
    (token,) = owner.annotators(cid, 1)
    events = Events(streams.port, annotator_ticket(owner, token)["stream_url"])
    try:
        first = {"pool": False, "status": "running", "round": 0, "round_status": "rendering"}
        assert events.next() == ("waiting", first)
        render_round(app, cid, 0)
        assert events.next() == ("waiting", {**first, "round_status": "open"})
        assert owner.post(f"/api/campaigns/{cid}/pause").status_code == 200
        assert events.next() == ("waiting", {**first, "round_status": "open", "status": "paused"})
    finally:
        events.close()


def test_the_console_is_told_of_its_campaigns_rounds_and_status(app, owner, streams):
    cid = owner.campaign(start=True)["id"]
    response = owner.client.post(f"/api/campaigns/{cid}/stream-ticket", headers=bearer(ADMIN))
    events = Events(streams.port, response.get_json()["stream_url"])
    try:
        assert events.next()[1] == {
            "status": "running", "round": 0, "round_status": "rendering", "rankings": 0
        }  # fmt: skip
        render_round(app, cid, 0)
        assert events.next()[1]["round_status"] == "open"
        assert owner.post(f"/api/campaigns/{cid}/stop").status_code == 200
        assert events.next()[1]["status"] == "stopped"
    finally:
        events.close()


@pytest.mark.parametrize("action", ["pause", "stop"])
def test_pausing_or_stopping_a_study_tells_its_waiting_workers(app, owner, streams, action):
    study = make_study(owner, start=True, recruit=True)
    tokens = [join(app, study["id"], f"p{n}") for n in range(2)]
    held = [Events(streams.port, annotator_ticket(owner, t)["stream_url"]) for t in tokens]
    try:
        for events in held:
            assert events.next() == (
                "waiting",
                {"pool": True, "open_rounds": 0, "latest_round": None, "study_status": "running"},
            )
        # Nothing is open (every round renders): only the study's status changes.
        assert owner.post(f"/api/studies/{study['id']}/{action}").status_code == 200
        for events in held:
            assert (
                events.next()[1]["study_status"] == {"pause": "paused", "stop": "stopped"}[action]
            )
    finally:
        for events in held:
            events.close()


def test_the_stream_process_refuses_bad_tickets(app, owner, streams):
    cid = owner.campaign()["id"]
    other = owner.campaign()["id"]
    response = owner.client.post(f"/api/campaigns/{cid}/stream-ticket", headers=bearer(ADMIN))
    good = response.get_json()["ticket"]
    kind, subject, expires, mac = good.split(".")
    forged = mac[:-1] + ("1" if mac.endswith("0") else "0")
    (token,) = owner.annotators(cid, 1)
    annotator = annotator_ticket(owner, token)["ticket"]
    refused = {
        f"/api/campaigns/{cid}/stream": 401,  # no ticket
        f"/api/campaigns/{cid}/stream?ticket={kind}.{subject}.{expires}.{forged}": 401,
        f"/api/campaigns/{cid}/stream?ticket={kind}.{subject}.%C2%B2.{mac}": 401,
        f"/api/campaigns/{cid}/stream?ticket={kind}.{subject}.1.{mac}": 401,  # expired
        f"/api/campaigns/{other}/stream?ticket={good}": 401,  # another campaign's
        f"/api/campaigns/{cid}/stream?ticket={annotator}": 401,  # an annotator's
        f"/api/tasks/stream?ticket={good}": 401,  # an owner's
        "/api/elsewhere": 404,
    }
    for url, status in refused.items():
        events = Events(streams.port, url)
        try:
            assert events.status == status, url
            assert json.loads(events.response.read())["error"]["message"], url
        finally:
            events.close()
    health = Events(streams.port, "/healthz")
    assert json.loads(health.response.read()) == {"status": "ok", "streams": 0}
    health.close()


def test_a_revoked_tokens_stream_ends_at_the_sweep(app, owner):
    settings = settings_of(app).model_copy(update={"push_sweep_s": 0.2})
    process = Background(settings)
    cid = owner.campaign(start=True)["id"]
    annotator = owner.post(f"/api/campaigns/{cid}/annotators", json={"count": 1}).get_json()
    (one,) = annotator["annotators"]
    events = Events(process.port, annotator_ticket(owner, one["token"])["stream_url"])
    try:
        assert events.next()[0] == "waiting"
        revoked = owner.post(f"/api/campaigns/{cid}/annotators/{one['id']}/revoke", json={})
        assert revoked.status_code == 200
        assert events.next() == ("end", {"reason": "gone"})
    finally:
        events.close()
        process.stop()


def test_a_ticket_names_the_stream_process_when_it_is_elsewhere(tmp_path):
    app = make_app(tmp_path, STREAM_URL="http://streams.example:8001/")
    owner = Owner(app.test_client())
    cid = owner.campaign()["id"]
    (token,) = owner.annotators(cid, 1)
    ticket = annotator_ticket(owner, token)
    assert ticket["stream_url"] == f"http://streams.example:8001{ticket['url']}"


@pytest.mark.slow
def test_one_stream_process_holds_many_waiting_pages(app, owner, streams):
    cid = owner.campaign(start=True)["id"]
    tokens = owner.annotators(cid, 200)
    held = [Events(streams.port, annotator_ticket(owner, t)["stream_url"]) for t in tokens]
    try:
        for events in held:
            assert events.next()[1]["round_status"] == "rendering"
        health = Events(streams.port, "/healthz")
        assert json.loads(health.response.read())["streams"] == len(tokens)
        health.close()
        render_round(app, cid, 0)
        for events in held:
            assert events.next()[1]["round_status"] == "open"
    finally:
        for events in held:
            events.close()


def test_the_listener_reconnects_and_misses_nothing(app, owner, streams):
    """PostgreSQL: the stream process's LISTEN connection killed (a database restart, a
    failover): it connects again and reads every watched state, so a round that opened
    meanwhile is still announced."""
    if app.extensions["rankloop_engine"].dialect.name != "postgresql":
        pytest.skip("SQLite has no listening connection")
    from sqlalchemy import text

    from service import db

    cid = owner.campaign(start=True)["id"]
    (token,) = owner.annotators(cid, 1)
    events = Events(streams.port, annotator_ticket(owner, token)["stream_url"])
    try:
        assert events.next()[1]["round_status"] == "rendering"
        with db.get_engine(app).begin() as connection:
            killed = (
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query = 'LISTEN rankloop_push'"
                    )
                )
                .scalars()
                .all()
            )
        assert killed == [True]
        render_round(app, cid, 0)
        assert events.next()[1]["round_status"] == "open"
    finally:
        events.close()
