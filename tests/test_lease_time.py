"""A task's lease (issue 9): derived from the round's size when the owner sets none, and
extended once by the time the task's images took to reach the annotator's screen.

The API tests run on SQLite and PostgreSQL (the ``app`` fixture of tests/fixtures/coordinator).
"""

from __future__ import annotations

import datetime as dt
import time

from rankloop.core.contracts import MAX_LEASE_S, MAX_LOAD_CREDIT_S, default_lease_s
from tests.fixtures.coordinator import bearer, render_round


def test_the_default_lease_grows_with_images_picks_and_size():
    nine_small = default_lease_s(8, None, 128, 128)
    assert nine_small > 60  # the demo's 60 s for nine images was too short
    assert default_lease_s(16, None, 128, 128) > nine_small  # more images to look at
    assert default_lease_s(8, 2, 128, 128) < nine_small  # fewer picks
    assert default_lease_s(8, None, 1024, 1024) > default_lease_s(8, None, 512, 512)
    assert default_lease_s(8, None, 1024, 1024) == default_lease_s(8, None, 2048, 2048)  # bounded
    assert default_lease_s(8, None, None, None) == default_lease_s(8, None, 1024, 1024)
    assert default_lease_s(8, None, 128, 128, attention_check=False) < nine_small
    assert all(default_lease_s(m, None, 512, 512) % 10 == 0 for m in range(2, 33))


def test_a_campaign_without_lease_s_stores_the_derived_one(owner):
    derived = owner.campaign(m=6, k=3, width=128, height=128)["settings"]
    assert derived["lease_s"] == default_lease_s(6, 3, 128, 128)
    assert owner.campaign(m=6, lease_s=75)["settings"]["lease_s"] == 75


def _backdate(app, task_id: str, seconds: float) -> None:
    """Make the lease ``seconds`` older on the server (its end moves with it)."""
    from service.db import session_scope
    from service.models import Assignment

    delta = dt.timedelta(seconds=seconds)
    with app.app_context(), session_scope() as session:
        task = session.get(Assignment, task_id)
        task.created_at -= delta  # in Python: SQLite stores timestamps as text
        task.expires_at -= delta
        session.commit()


def _end(response) -> dt.datetime:
    return dt.datetime.fromisoformat(response.json["expires_at"].removesuffix("Z"))


def test_the_images_loading_time_extends_the_lease_once(app, owner):
    cid = owner.campaign(start=True, lease_s=300)["id"]
    render_round(app, cid, 0)
    mine, other = owner.annotators(cid, 2)
    client = app.test_client()
    task = client.get("/api/tasks/next", headers=bearer(mine)).json
    shown = f"/api/tasks/{task['task_id']}/shown"
    began = time.monotonic()
    _backdate(app, task["task_id"], 30)
    start = client.get("/api/tasks/next", headers=bearer(mine))
    assert start.json["task_id"] == task["task_id"]
    for absurd in (-1, MAX_LEASE_S + 1, "12", None, float("nan")):
        response = client.post(shown, json={"load_s": absurd}, headers=bearer(mine))
        assert response.status_code == 422, absurd
    assert client.post(shown, json={"load_s": 1}, headers=bearer(other)).status_code == 403
    assert client.post(shown, json={"load_s": 1}, headers=bearer("nobody")).status_code == 401
    assert (
        client.post("/api/tasks/nope/shown", json={"load_s": 1}, headers=bearer(mine)).status_code
        == 404
    )

    # 100 s claimed on a lease that began 30 s ago: the images cannot have taken longer.
    first = client.post(shown, json={"load_s": 100}, headers=bearer(mine))
    assert first.status_code == 200
    credit = (_end(first) - _end(start)).total_seconds()
    # 30 s and however long this test's requests took since (a loaded machine is slow).
    assert 30 <= credit <= 30 + (time.monotonic() - began) + 1
    again = client.post(shown, json={"load_s": 20}, headers=bearer(mine))
    assert again.status_code == 200 and _end(again) == _end(first)  # once per lease
    assert (
        client.get("/api/tasks/next", headers=bearer(mine)).json["expires_at"]
        == (first.json["expires_at"])
    )

    # Run out, renewed for the same annotator: the new lease may be extended again.
    _backdate(app, task["task_id"], 400)
    assert client.post(shown, json={"load_s": 1}, headers=bearer(mine)).status_code == 410
    renewed = client.get("/api/tasks/next", headers=bearer(mine))
    assert renewed.json["task_id"] == task["task_id"]
    _backdate(app, task["task_id"], 200)
    later = client.post(shown, json={"load_s": 150}, headers=bearer(mine))
    assert later.status_code == 200
    backdated = _end(renewed) - dt.timedelta(seconds=200)
    assert (_end(later) - backdated).total_seconds() == MAX_LOAD_CREDIT_S  # the most it adds
