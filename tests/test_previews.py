"""A campaign's starting image before the campaign exists (service/api/previews.py): the render
is queued as the workers' usual task; here the message is taken off the in-memory broker and
rendered in process by the worker's own function (the CPU generator), as a worker would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask import Flask

from rankloop.core.contracts import GPU_QUEUE, RENDER_TASK, heartbeat_key
from service import db
from service.auth import hash_token, new_token
from service.models import OwnerKey
from tests.fixtures.coordinator import Owner, bearer, make_app

SETTINGS = {"prompt": "an abstract pattern", "generator": "cppn", "width": 64, "height": 64,
            "m": 6, "k": 3, "seed": 3}  # fmt: skip


@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:
    application = make_app(tmp_path)
    yield application
    db.get_engine(application).dispose()


def queued(app: Flask, render_id: str = "") -> dict:
    """The render message of the preview ``render_id`` (any: the first) from the broker, as a
    worker would receive it."""
    with app.extensions["celery"].connection_for_read() as connection:
        queue = connection.SimpleQueue(GPU_QUEUE)
        try:
            while True:
                message = queue.get(timeout=5)
                message.ack()
                if message.headers["id"].startswith(f"preview-{render_id}"):
                    assert message.headers["task"] == RENDER_TASK
                    return message.decode()[1]
        finally:
            queue.close()


@pytest.mark.slow  # imports the render worker (torch)
def test_a_preview_renders_the_starting_image(app: Flask):
    from gpu_worker.render import render_round

    owner = Owner(app.test_client())
    asked = owner.post("/api/previews", json=SETTINGS)
    assert asked.status_code == 202 and asked.json["status"] == "rendering"
    preview = f"/api/previews/{asked.json['id']}"
    assert owner.get(preview).status_code == 202
    render_id = asked.json["id"].split("-")[0]
    message = queued(app, render_id)
    # The fewest candidates and no attention image: the starting point is what is wanted.
    assert message["settings"]["m"] == 2 and message["settings"]["attention_check"] is False
    assert message["settings"]["seed"] == 3 and message["round_number"] == 0
    store = app.extensions["rankloop_store"]
    render_round(store, message["campaign_id"], 0, message["settings"], None, None)

    ready = owner.get(preview)
    assert ready.status_code == 200 and ready.json["status"] == "ready", ready.json
    image = owner.client.get(ready.json["image_url"])
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert owner.client.get(ready.json["thumb_url"]).status_code == 200


def test_a_preview_is_its_owners_and_validated_as_a_campaign(app: Flask):
    owner = Owner(app.test_client())
    assert owner.post("/api/previews", json={**SETTINGS, "k": 9}).status_code == 422
    assert owner.client.post("/api/previews", json=SETTINGS).status_code == 401
    asked = owner.post("/api/previews", json=SETTINGS).json
    key = new_token()
    with app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab b", key_hash=hash_token(key)))
        session.commit()
    other = owner.client.get(f"/api/previews/{asked['id']}", headers=bearer(key))
    assert other.status_code == 404
    forged = asked["id"][:-1] + ("0" if asked["id"][-1] != "0" else "1")
    for bad in ("nope", forged, asked["id"].split("-")[0]):
        assert owner.get(f"/api/previews/{bad}").status_code == 404
    assert owner.get(f"/api/previews/{asked['id']}").status_code == 202  # the asker's own


def test_a_failed_preview_says_why(app: Flask):
    owner = Owner(app.test_client())
    asked = owner.post("/api/previews", json=SETTINGS).json
    render_id = asked["id"].split("-")[0]
    # What a worker leaves for a permanent error (gpu_worker.tasks.report_permanent).
    body = {"at": 0, "worker": "w", "error": "ModelUnavailable: no such model"}
    store = app.extensions["rankloop_store"]
    store.put(heartbeat_key(render_id, 0), json.dumps(body).encode())
    failed = owner.get(f"/api/previews/{asked['id']}")
    assert failed.status_code == 200
    assert failed.json["status"] == "failed" and "no such model" in failed.json["error"]


def test_a_preview_is_at_most_512_squared(app: Flask):
    """A preview was rendered at any size a campaign may have (2048²): now at most 512² per
    image, a larger one refused naming the size fields."""
    owner = Owner(app.test_client())
    for width, height in ((2048, 2048), (640, 480), (1024, 264)):
        body = {**SETTINGS, "m": 2, "k": None, "width": width, "height": height}
        refused = owner.post("/api/previews", json=body)
        assert refused.status_code == 422, refused.json
        assert "at most 262,144 pixels per image" in refused.json["error"]["message"]
        assert {d["field"] for d in refused.json["error"]["details"]} == {"width", "height"}
    body = {**SETTINGS, "width": 512, "height": 512}
    assert owner.post("/api/previews", json=body).status_code == 202
    # A campaign keeps its own bound: 2048² is still a campaign's size.
    assert owner.post("/api/campaigns", json={**SETTINGS, "m": 2, "k": None, "width": 2048,
                                              "height": 2048}).status_code == 201  # fmt: skip
