"""Render slots shared fairly (issue 19): within an owner, renders waiting for a slot go
round-robin across the owner's studies and plain campaigns, oldest first
(service/render_queue.py), from the sweep and from a request alike; a plain campaign's render
waits behind one render per other group, not behind a study's whole backlog; another owner's
render never waits for this owner's slots.

Every test runs on SQLite and on PostgreSQL (the ``app`` fixture of tests/fixtures/coordinator).
"""

from __future__ import annotations

import datetime as dt

from flask import Flask
from sqlalchemy import select

from rankloop.core.contracts import RoundStatus
from rankloop.core.settings import settings_of
from service import db, sweep
from service.auth import hash_token, new_token
from service.models import AuditEvent, Campaign, OwnerKey, Round
from service.render_queue import waiting_in_turn
from service.rendering import run_step
from tests.fixtures.coordinator import Owner, bearer, render_round

SHARED = {"m": 4, "annotators_per_round": 2, "rounds": 3, "tasks_per_annotator": 2}


def study(owner: Owner, name: str, n: int) -> list[str]:
    """A running study of ``n`` prompts: its campaigns' ids, in prompt order."""
    prompts = [f"{name} prompt {i}" for i in range(n)]
    response = owner.post(
        "/api/studies", json={"name": name, "prompts": prompts, "settings": SHARED, "start": True}
    )
    assert response.status_code == 201, response.json
    return [c["id"] for c in response.json["campaigns"]]


def in_flight(app: Flask) -> list[str]:
    """The campaigns whose round 0 render is sent and not back."""
    with app.app_context(), db.session_scope() as session:
        return list(
            session.scalars(
                select(Round.campaign_id).where(
                    Round.status == RoundStatus.RENDERING, Round.render_enqueued_at.is_not(None)
                )
            )
        )


def next_sweep(app: Flask) -> None:
    soon = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=2)
    with app.app_context():
        run_step(sweep.sweep, soon)


def serve_all(app: Flask) -> list[str]:
    """Render whatever is in flight, one sweep after each: the campaigns in the order their
    render went out."""
    order: list[str] = []
    while flying := in_flight(app):
        assert len(flying) == 1  # one slot
        order.append(flying[0])
        render_round(app, flying[0], 0)
        next_sweep(app)
    return order


def test_waiting_renders_take_turns_across_studies_and_campaigns_oldest_first(app, owner):
    settings_of(app).render_slots_per_owner = 1
    a = study(owner, "a", 4)  # a[0] takes the slot, the rest wait
    b = study(owner, "b", 2)
    plain = owner.campaign(start=True)["id"]
    assert in_flight(app) == [a[0]]
    with app.app_context(), db.session_scope() as session:
        queue = [w.campaign_id for w in waiting_in_turn(session)]
    # Each group's oldest (the groups never served first), then each group's second, and so on.
    assert queue == [b[0], plain, a[1], b[1], a[2], a[3]]
    assert serve_all(app) == [a[0], *queue]


def test_a_new_render_does_not_jump_the_queue_when_a_slot_frees(app, owner):
    """A slot freed between two sweeps goes to the render first in turn, not to whichever
    request makes a render then; the request's render waits its turn."""
    settings_of(app).render_slots_per_owner = 1
    first = owner.campaign(start=True)["id"]
    a = study(owner, "a", 2)
    render_round(app, first, 0)  # the slot frees; no sweep yet
    late = owner.campaign(start=True)["id"]
    assert in_flight(app) == [a[0]]  # sent in its place: older, and first in its turn
    with app.app_context(), db.session_scope() as session:
        queue = [w.campaign_id for w in waiting_in_turn(session)]
        reasons = session.scalars(
            select(AuditEvent.data["reason"].as_string()).where(
                AuditEvent.campaign_id == a[0], AuditEvent.kind == "round_render_resent"
            )
        ).all()
    assert queue == [late, a[1]]  # the study was just served: the late campaign goes next
    assert reasons == [sweep.SLOT_FREED]
    assert serve_all(app) == [a[0], late, a[1]]


def test_a_study_backlog_holds_no_other_owners_render(app, owner):
    settings_of(app).render_slots_per_owner = 1
    study(owner, "big", 6)
    key = new_token()
    with app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab b", key_hash=hash_token(key)))
        session.commit()
    other = app.test_client().post(
        "/api/campaigns",
        json={"prompt": "a pear", "start": True, **SHARED},
        headers=bearer(key),
    )
    assert other.status_code == 201
    assert other.json["id"] in in_flight(app)  # at once: its owner's slot was free
    with app.app_context(), db.session_scope() as session:
        owners = {
            session.get(Campaign, w.campaign_id).owner_key_id  # type: ignore[union-attr]
            for w in waiting_in_turn(session)
        }
    assert owners == {None}  # only the admin's study waits


def sent_job(app: Flask, campaign_id: str) -> str | None:
    """The render job id of the campaign's round 0: set once its message left for the broker."""
    with app.app_context(), db.session_scope() as session:
        return session.scalar(select(Round.render_task_id).where(Round.campaign_id == campaign_id))


def test_a_waiting_render_goes_out_when_the_render_ahead_comes_back_without_a_sweep(app, owner):
    """The bookkeeping job that records a render's result (rankloop.coord.round_rendered) gives
    the slot it frees, after its commit, to its owner's next waiting render in turn: that render
    went out at the next sweep, up to 2 s later. No sweep runs here."""
    settings_of(app).render_slots_per_owner = 1
    first = owner.campaign(start=True)["id"]
    a = study(owner, "a", 2)
    plain = owner.campaign(start=True)["id"]
    with app.app_context(), db.session_scope() as session:
        queue = [w.campaign_id for w in waiting_in_turn(session)]
    assert queue == [a[0], plain, a[1]]
    back = first
    for expected in queue:
        assert sent_job(app, expected) is None
        render_round(app, back, 0, via_job=True)
        assert in_flight(app) == [expected]
        assert sent_job(app, expected) is not None  # its message went to the broker
        back = expected
    render_round(app, back, 0, via_job=True)
    assert in_flight(app) == []
    with app.app_context(), db.session_scope() as session:
        reasons = session.scalars(
            select(AuditEvent.data["reason"].as_string()).where(
                AuditEvent.campaign_id.in_(queue), AuditEvent.kind == "round_render_resent"
            )
        ).all()
    assert reasons == [sweep.SLOT_FREED] * 3


def test_a_render_failed_for_good_gives_its_slot_to_the_next_waiting_render(app, owner):
    """A render failed after the worker's retries (rankloop.coord.round_failed): a permanent
    error fails its round and frees its slot for the next waiting render at once; a passing
    error leaves the round rendering, holding its slot, so nothing else goes."""
    from rankloop.core.errors import ModelUnavailable, StorageError
    from service.tasks import round_failed_task

    settings_of(app).render_slots_per_owner = 1
    failing = owner.campaign(start=True)["id"]
    waiting = owner.campaign(start=True)["id"]
    assert in_flight(app) == [failing]
    with app.app_context():
        where = {"campaign_id": failing, "round_number": 0}
        assert round_failed_task(None, StorageError("store down"), None, **where)
        assert in_flight(app) == [failing]
        assert round_failed_task(None, ModelUnavailable("no such model"), None, **where)
    assert in_flight(app) == [waiting] and sent_job(app, waiting) is not None


def test_a_render_result_is_recorded_when_its_slot_cannot_be_passed_on(app, owner, monkeypatch):
    """The waiting render is sent after the result's commit, best effort: with the broker down
    then the result still counts (the round opens) and the sweep sends the waiting render."""
    from service import render_sending

    settings_of(app).render_slots_per_owner = 1
    first = owner.campaign(start=True)["id"]
    waiting = owner.campaign(start=True)["id"]

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    with monkeypatch.context() as patch:
        patch.setattr(render_sending, "send_render", broker_down)
        render_round(app, first, 0, via_job=True)  # asserts the job recorded it
    assert owner.get(f"/api/campaigns/{first}").json["current_round"]["status"] == "open"
    assert in_flight(app) == [] and sent_job(app, waiting) is None
    next_sweep(app)
    assert in_flight(app) == [waiting] and sent_job(app, waiting) is not None
