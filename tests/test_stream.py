"""Live updates (service/api/stream.py): a campaign's stream sends an event when its round opens
and fills and when the campaign stops; an annotator's stream when a round opens for them, and
ends when their token is revoked; tickets open one stream of one credential, for a minute; a
process holds a bounded number of streams; a revoked owner key's open stream ends.

Streams are read as they come (``buffered=False``): each read waits for the stream's next poll
of the database, which sees what the test changed in between.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask

from rankloop.core.settings import settings_of
from service import db
from service.auth import hash_token, new_token
from service.models import OwnerKey
from service.push.tickets import make_ticket
from tests.fixtures.coordinator import ADMIN, Owner, bearer, make_app, render_round


class Events:
    """The events of an open stream, one at a time (heartbeat comments skipped)."""

    def __init__(self, response: Any) -> None:
        assert response.status_code == 200, response.get_data()
        assert response.mimetype == "text/event-stream"
        self.response = response
        self.chunks: Iterator[bytes] = iter(response.response)

    def next(self) -> tuple[str, dict]:
        for chunk in self.chunks:
            fields = dict(
                line.split(": ", 1) for line in chunk.decode().splitlines() if ": " in line
            )
            if "event" in fields:
                return fields["event"], json.loads(fields["data"])
        raise AssertionError("the stream ended without another event")

    def close(self) -> None:
        self.response.close()


def open_stream(owner: Owner, url: str, **headers: str) -> Events:
    return Events(owner.client.get(url, headers=headers, buffered=False))


def campaign_ticket(owner: Owner, campaign_id: str, key: str = ADMIN) -> dict:
    response = owner.client.post(f"/api/campaigns/{campaign_id}/stream-ticket", headers=bearer(key))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_campaign_stream_follows_its_rounds(app: Flask, owner: Owner):
    cid = owner.campaign(start=True, annotators_per_round=1)["id"]
    (token,) = owner.annotators(cid, 1)
    ticket = campaign_ticket(owner, cid)
    assert ticket["url"].startswith(f"/api/campaigns/{cid}/stream?ticket=")
    assert ADMIN not in ticket["url"]
    events = open_stream(owner, ticket["url"])
    try:
        assert events.next() == (
            "campaign",
            {"status": "running", "round": 0, "round_status": "rendering", "rankings": 0},
        )
        render_round(app, cid, 0)
        assert events.next()[1]["round_status"] == "open"
        task = owner.client.get("/api/tasks/next", headers=bearer(token)).get_json()
        order = [image["id"] for image in task["images"]]
        sent = owner.client.post(
            f"/api/tasks/{task['task_id']}/ranking", json={"order": order}, headers=bearer(token)
        )
        assert sent.status_code == 201
        # The quorum of one closes round 0 and sends round 1 to render.
        name, state = events.next()
        while state["round"] == 0:
            name, state = events.next()
        assert (name, state["round"], state["round_status"]) == ("campaign", 1, "rendering")
        assert owner.post(f"/api/campaigns/{cid}/stop").status_code == 200
        assert events.next()[1]["status"] == "stopped"
    finally:
        events.close()


def test_a_stream_ends_with_an_end_event(tmp_path):
    app = make_app(tmp_path, STREAM_LIFETIME_S=0)
    owner = Owner(app.test_client())
    cid = owner.campaign()["id"]
    body = owner.get(f"/api/campaigns/{cid}/stream").get_data(as_text=True)
    assert body.startswith("retry: ") and body.endswith(
        'event: end\ndata: {"reason": "lifetime"}\n\n'
    )
    db.get_engine(app).dispose()


def test_a_ticket_opens_one_campaigns_stream_of_its_own_owner_for_a_minute(
    app: Flask, owner: Owner
):
    cid = owner.campaign()["id"]
    other = owner.campaign()["id"]
    url = campaign_ticket(owner, cid)["url"]
    ticket = url.split("ticket=")[1]
    # Nobody streams without a credential, and a key is no ticket.
    assert owner.client.get(f"/api/campaigns/{cid}/stream").status_code == 401
    assert owner.client.get(f"/api/campaigns/{cid}/stream?ticket={ADMIN}").status_code == 401
    # A ticket opens its own campaign's stream only, unaltered, within its time.
    assert owner.client.get(f"/api/campaigns/{other}/stream?ticket={ticket}").status_code == 401
    forged = ticket[:-1] + ("0" if ticket[-1] != "0" else "1")
    assert owner.client.get(f"/api/campaigns/{cid}/stream?ticket={forged}").status_code == 401
    stale = make_ticket(hash_token(ADMIN), "o", f"{cid}:admin", now=time.time() - 61)
    assert owner.client.get(f"/api/campaigns/{cid}/stream?ticket={stale}").status_code == 401

    # Another owner key: no ticket for this campaign; its own ticket dies with the key.
    key = new_token()
    with app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab b", key_hash=hash_token(key)))
        session.commit()
    assert (
        owner.client.post(f"/api/campaigns/{cid}/stream-ticket", headers=bearer(key)).status_code
        == 403
    )
    theirs = owner.client.post("/api/campaigns", json={"prompt": "a pear"}, headers=bearer(key))
    their_url = campaign_ticket(owner, theirs.get_json()["id"], key)["url"]
    events = open_stream(owner, their_url)
    try:
        assert events.next()[0] == "campaign"
        with app.app_context(), db.session_scope() as session:
            row = session.query(OwnerKey).filter_by(key_hash=hash_token(key)).one()
            row.revoked_at = row.created_at
            session.commit()
        assert events.next() == ("end", {"reason": "gone"})  # the open stream ends at once
    finally:
        events.close()
    assert owner.client.get(their_url).status_code == 401


def test_the_annotator_stream_says_when_a_round_opens_and_ends_on_revoke(app: Flask, owner: Owner):
    cid = owner.campaign(start=True)["id"]
    response = owner.post(f"/api/campaigns/{cid}/annotators", json={"count": 1})
    annotator = response.get_json()["annotators"][0]
    assert owner.client.get("/api/tasks/stream").status_code == 401
    ticket = owner.client.post("/api/tasks/stream-ticket", headers=bearer(annotator["token"]))
    assert ticket.status_code == 200
    url = ticket.get_json()["url"]
    assert url.startswith("/api/tasks/stream?ticket=") and annotator["token"] not in url
    events = open_stream(owner, url)
    try:
        first = {"pool": False, "status": "running", "round": 0, "round_status": "rendering"}
        assert events.next() == ("waiting", first)
        render_round(app, cid, 0)
        assert events.next() == ("waiting", {**first, "round_status": "open"})
        revoked = owner.post(f"/api/campaigns/{cid}/annotators/{annotator['id']}/revoke", json={})
        assert revoked.status_code == 200
        assert events.next() == ("end", {"reason": "gone"})
    finally:
        events.close()
    assert owner.client.get(url).status_code == 401  # the ticket died with the token


def test_a_pool_annotators_stream_follows_every_running_campaign(app: Flask, owner: Owner):
    first = owner.campaign(start=True)["id"]
    second = owner.campaign(start=True)["id"]
    (token,) = owner.annotators(first, 1, pool=True)
    events = open_stream(owner, "/api/tasks/stream", **bearer(token))
    try:
        assert events.next() == ("waiting", {"pool": True, "open_rounds": 0, "latest_round": None})
        render_round(app, second, 0)
        assert events.next()[1]["open_rounds"] == 1
        render_round(app, first, 0)
        assert events.next()[1]["open_rounds"] == 2
        assert owner.post(f"/api/campaigns/{second}/pause").status_code == 200
        assert events.next()[1]["open_rounds"] == 1
    finally:
        events.close()


def test_a_process_holds_a_bounded_number_of_streams(app: Flask, owner: Owner):
    slots = settings_of(app).web_stream_slots  # RANKLOOP_WEB_STREAM_SLOTS
    urls = [f"/api/campaigns/{owner.campaign()['id']}/stream" for _ in range(slots + 1)]
    held = [open_stream(owner, url, **bearer(ADMIN)) for url in urls[:slots]]
    refused = owner.get(urls[-1])
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert refused.get_json()["error"]["message"].endswith("poll instead")
    held.pop().close()  # a closed stream frees its place
    open_stream(owner, urls[-1], **bearer(ADMIN)).close()
    for events in held:
        events.close()


def test_one_annotator_holds_one_stream_and_leaves_the_others_theirs(app: Flask, owner: Owner):
    cid = owner.campaign(start=True)["id"]
    response = owner.post(f"/api/campaigns/{cid}/annotators", json={"count": 2})
    tokens = [a["token"] for a in response.get_json()["annotators"]]
    mine = open_stream(owner, "/api/tasks/stream", **bearer(tokens[0]))
    try:
        again = owner.client.get("/api/tasks/stream", headers=bearer(tokens[0]))
        assert again.status_code == 503 and again.headers["Retry-After"]
        open_stream(owner, "/api/tasks/stream", **bearer(tokens[1])).close()  # a slot was left
    finally:
        mine.close()
    open_stream(owner, "/api/tasks/stream", **bearer(tokens[0])).close()  # freed on close


def test_a_malformed_ticket_is_refused_never_a_server_error(app: Flask, owner: Owner):
    cid = owner.campaign()["id"]
    good = campaign_ticket(owner, cid)["url"].split("ticket=")[1]
    kind, subject, expires, mac = good.split(".")
    for bad in (
        f"{kind}.{subject}.\u00b2.{mac}",  # a digit to str.isdigit, not to int()
        f"{kind}.{subject}.{expires}.{mac[:-1]}\u00e9",  # a non-ASCII MAC
        f"{kind}.{subject}.{expires}",
        "",
    ):
        response = owner.client.get(f"/api/campaigns/{cid}/stream", query_string={"ticket": bad})
        assert response.status_code == 401, (bad, response.status_code)


def test_the_streams_answer_as_the_document_says(app: Flask, owner: Owner):
    from tests.test_service_api import Contract

    settings_of(app).stream_lifetime_s = 0  # whole streams are read: end them at once
    api = Contract(app)
    cid = owner.campaign(start=True)["id"]
    (token,) = owner.annotators(cid, 1)
    campaign = "/api/campaigns/{campaign_id}"
    ticket = api.call("post", f"{campaign}/stream-ticket", campaign_id=cid).json["ticket"]
    api.call("get", f"{campaign}/stream", None, f"?ticket={ticket}", campaign_id=cid)
    ticket = api.call("post", "/api/tasks/stream-ticket", token=token).json["ticket"]
    api.call("get", "/api/tasks/stream", None, f"?ticket={ticket}")
    api.call("get", "/api/tasks/stream", token=token)
    documented = {
        (path, method, status)
        for path, operations in api.document["paths"].items()
        if "stream" in path
        for method, operation in operations.items()
        for status in operation["responses"]
        if not status.endswith("XX")
    }
    assert len(documented) == 4 and documented <= api.checked, documented - api.checked


def test_a_web_tier_set_to_serve_no_streams_says_poll(tmp_path):
    app = make_app(tmp_path, WEB_STREAM_SLOTS=0)  # streams are the stream process's alone
    owner = Owner(app.test_client())
    cid = owner.campaign()["id"]
    refused = owner.get(f"/api/campaigns/{cid}/stream")
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert refused.get_json()["error"]["message"].endswith("poll instead")
    db.get_engine(app).dispose()
