"""One tenant must not hurt the others (issue 13): bounded renders and fair render slots,
rate limits that cannot be sidestepped, the object store's edges, a paginated campaign list.

Tests with the ``app`` fixture run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest
from sqlalchemy import select, update

from rankloop.core.errors import InvalidInput, NotFound
from rankloop.core.settings import settings_of
from rankloop.core.storage import LocalStore, round_prefix
from service import db, sweep
from service.auth import hash_token, new_token
from service.models import AuditEvent, Campaign, OwnerKey, Round
from service.preview_renders import PREVIEW_HOLD_S, PREVIEW_SENT, previews_in_flight
from service.render_slots import render_slot_free
from service.rendering import run_step
from tests.fixtures.coordinator import Owner, bearer, make_app, render_round


@pytest.fixture
def limited(tmp_path):
    apps = []

    def build(**config):
        app = make_app(tmp_path / str(len(apps)), **config)
        apps.append(app)
        return app

    yield build
    for app in apps:
        db.get_engine(app).dispose()


# -- one campaign must not hold the render worker ----------------------------------------------
def test_round_size_is_bounded_per_generator_at_create_and_in_the_worker(owner, tmp_path):
    huge = owner.post(
        "/api/campaigns", json={"prompt": "x", "m": 32, "width": 2048, "height": 2048}
    )
    assert huge.status_code == 422 and "pixels per round" in huge.json["error"]["message"]
    assert (
        owner.post("/api/campaigns", json={"prompt": "x", "m": 8, "width": 1024}).status_code == 201
    )

    from gpu_worker.render import render_round as worker_render

    settings = {"generator": "cppn", "m": 32, "width": 2048, "height": 2048}
    with pytest.raises(InvalidInput, match="pixels per round"):
        worker_render(LocalStore(tmp_path / "objects"), "c" * 32, 0, settings)


def _enqueued(app, campaign_id: str):
    with app.app_context(), db.session_scope() as session:
        return session.scalar(
            select(Round.render_enqueued_at).where(Round.campaign_id == campaign_id)
        )


def test_renders_wait_for_a_slot_of_their_owner_and_other_owners_go_first(app, owner):
    settings_of(app).render_slots_per_owner = 1
    first = owner.campaign(start=True)["id"]
    waiting = owner.campaign(start=True)["id"]
    assert _enqueued(app, first) is not None
    assert _enqueued(app, waiting) is None  # the admin's one slot is busy

    # Another owner's render is not queued behind the admin's.
    key = new_token()
    with app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab b", key_hash=hash_token(key)))
        session.commit()
    other = app.test_client().post(
        "/api/campaigns", json={"prompt": "a pear", "start": True}, headers=bearer(key)
    )
    assert other.status_code == 201 and _enqueued(app, other.json["id"]) is not None

    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=5)
    with app.app_context():
        run_step(sweep.sweep, later)
        assert _enqueued(app, waiting) is None  # still busy: the sweep does not send it
        render_round(app, first, 0)  # the slot frees
        run_step(sweep.sweep, later)
    assert _enqueued(app, waiting) is not None
    with app.app_context(), db.session_scope() as session:
        kinds = session.scalars(
            select(AuditEvent.kind).where(AuditEvent.campaign_id == waiting)
        ).all()
    assert "round_render_waiting" in kinds and "round_render_resent" in kinds


def test_a_render_kept_for_a_slot_is_sent_by_the_next_sweep_once_one_frees(app, owner):
    """Not 30 s after its round was made (the grace of a render whose broker was down at
    commit): a Redis restart under three campaigns of one owner left the third without work
    for 29.5 s, 23 of them waiting for that grace with a slot free."""
    settings_of(app).render_slots_per_owner = 1
    first = owner.campaign(start=True)["id"]
    waiting = owner.campaign(start=True)["id"]
    assert _enqueued(app, waiting) is None
    soon = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=2)
    with app.app_context():
        render_round(app, first, 0)  # the slot frees
        run_step(sweep.sweep, soon)  # beat's next sweep
    assert _enqueued(app, waiting) is not None
    with app.app_context(), db.session_scope() as session:
        reason = AuditEvent.data["reason"].as_string()
        resent = session.scalars(
            select(reason).where(
                AuditEvent.campaign_id == waiting, AuditEvent.kind == "round_render_resent"
            )
        ).all()
    assert resent == [sweep.SLOT_FREED]


def test_a_session_outside_the_app_counts_render_slots_by_the_settings_default(
    app, owner, monkeypatch
):
    """Outside an app context (a script's session) the cap is the setting's, 2 by default: it
    was 0 there (no cap), while the app itself capped at 2."""
    monkeypatch.delenv("RANKLOOP_RENDER_SLOTS_PER_OWNER", raising=False)
    assert settings_of(app).render_slots_per_owner == 2
    ids = [owner.campaign(start=True)["id"] for _ in range(3)]
    assert [_enqueued(app, cid) is not None for cid in ids] == [True, True, False]
    with db.session_scope(app) as session:
        third = session.get(Campaign, ids[2])
        assert third is not None
        assert not render_slot_free(session, third, 0)  # two in flight: no slot
        assert render_slot_free(session, third, 0, slots=3)


def test_a_stopped_campaign_frees_its_render_slot(app, owner):
    settings_of(app).render_slots_per_owner = 1
    stopped = owner.campaign(start=True)["id"]
    waiting = owner.campaign(start=True)["id"]
    assert _enqueued(app, waiting) is None
    assert owner.post(f"/api/campaigns/{stopped}/stop").status_code == 200
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=5)
    with app.app_context():
        run_step(sweep.sweep, later)
    assert _enqueued(app, waiting) is not None


PREVIEW = {"prompt": "an abstract pattern", "generator": "cppn", "width": 64, "height": 64}


def _previews_sent(app) -> int:
    with app.app_context(), db.session_scope() as session:
        return len(session.scalars(select(AuditEvent).where(AuditEvent.kind == PREVIEW_SENT)).all())


def test_previews_take_their_owners_render_slots_and_leave_other_owners_alone(app, owner):
    """An owner's previews were sent outside the render cap (10 previews at 2048² held one
    worker for minutes while another owner's first round waited): now a preview takes one of
    its owner's slots, counted with their rounds, and is refused (429, Retry-After) when none
    is free; another owner renders as before."""
    settings_of(app).render_slots_per_owner = 2
    busy = [owner.campaign(start=True)["id"] for _ in range(2)]
    assert all(_enqueued(app, cid) is not None for cid in busy)
    for _ in range(3):
        refused = owner.post("/api/previews", json=PREVIEW)
        assert refused.status_code == 429, refused.json
        assert refused.headers["Retry-After"] == "10"
        assert refused.json["error"]["code"] == "render_slots_busy"
    assert _previews_sent(app) == 0  # no render went to the queue

    # Another owner: its round is sent at once, and its preview too.
    key = new_token()
    with app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab b", key_hash=hash_token(key)))
        session.commit()
    client = app.test_client()
    other = client.post("/api/campaigns", json={"prompt": "a pear", "start": True},
                        headers=bearer(key))  # fmt: skip
    assert other.status_code == 201 and _enqueued(app, other.json["id"]) is not None
    assert client.post("/api/previews", json=PREVIEW, headers=bearer(key)).status_code == 202

    # A round comes back: one preview takes the free slot, the next is refused.
    render_round(app, busy[0], 0)
    taken = owner.post("/api/previews", json=PREVIEW)
    assert taken.status_code == 202, taken.json
    assert owner.post("/api/previews", json=PREVIEW).status_code == 429
    # The preview holds the slot against the owner's rounds as well: a new round waits.
    waiting = owner.campaign(start=True)["id"]
    assert _enqueued(app, waiting) is None

    # Its manifest in the store: the preview is done and the waiting round is sent.
    render_id = taken.json["id"].split("-")[0]
    store = app.extensions["rankloop_store"]
    store.put(f"{round_prefix(render_id, 0)}/manifest.json", b"{}", "application/json")
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=5)
    with app.app_context():
        run_step(sweep.sweep, later)
    assert _enqueued(app, waiting) is not None


def test_a_preview_that_could_not_be_sent_gives_its_slot_to_a_waiting_render(
    app, owner, monkeypatch
):
    """A preview takes a free slot ahead of the owner's waiting rounds (it is wanted now); when
    the broker refuses it, the slot goes to the first waiting round at once, not at the next
    sweep (none runs here)."""
    from service.api import previews

    settings_of(app).render_slots_per_owner = 1
    done = owner.post("/api/previews", json=PREVIEW)
    assert done.status_code == 202
    waiting = owner.campaign(start=True)["id"]
    assert _enqueued(app, waiting) is None  # the preview holds the one slot
    # That preview finishes (its manifest in the store), unnoticed until the next slot check.
    store = app.extensions["rankloop_store"]
    manifest = f"{round_prefix(done.json['id'].split('-')[0], 0)}/manifest.json"
    store.put(manifest, b"{}", "application/json")

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(previews, "send_render", broker_down)
    refused = owner.post("/api/previews", json=PREVIEW)
    assert refused.status_code == 503, refused.json
    assert _enqueued(app, waiting) is not None


def test_a_lost_preview_stops_holding_its_slot(app, owner):
    """A preview is never sent again: one lost with its worker counts for PREVIEW_HOLD_S."""
    settings_of(app).render_slots_per_owner = 1
    assert owner.post("/api/previews", json=PREVIEW).status_code == 202
    assert owner.post("/api/previews", json=PREVIEW).status_code == 429
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=PREVIEW_HOLD_S)
    with app.app_context(), db.session_scope() as session:
        assert previews_in_flight(session, None) == 1
        assert previews_in_flight(session, None, later + dt.timedelta(seconds=1)) == 0
    settings_of(app).render_slots_per_owner = 0  # no cap: previews are not counted
    assert owner.post("/api/previews", json=PREVIEW).status_code == 202


def test_two_coordinators_checking_one_owners_last_slot_at_once_take_it_once(app, owner):
    """Two sweeps (two coordinators) each find one of an owner's waiting renders and its one
    free slot: the second check waits for the first's transaction and then sees the slot taken
    (without the lock both saw it free and the owner had two renders in flight)."""
    if db.get_engine(app).dialect.name != "postgresql":
        pytest.skip("the lock is PostgreSQL's: SQLite serves the one-process demo")
    settings_of(app).render_slots_per_owner = 1
    first = owner.campaign(start=True)["id"]
    waiting = [owner.campaign(start=True)["id"] for _ in range(2)]
    assert [_enqueued(app, cid) for cid in waiting] == [None, None]
    render_round(app, first, 0)  # the one slot frees; both renders wait for it

    def check(session, cid: str) -> bool:
        campaign = session.get(Campaign, cid)
        return render_slot_free(session, campaign, 0)

    second: dict[str, bool] = {}
    with app.app_context(), db.session_scope() as one:
        assert check(one, waiting[0])  # the first check finds the slot free and holds the lock

        def other() -> None:
            with app.app_context(), db.session_scope() as two:
                second["free"] = check(two, waiting[1])
                two.rollback()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive() and not second  # waiting for the first's transaction
        one.execute(
            update(Round)
            .where(Round.campaign_id == waiting[0], Round.number == 0)
            .values(render_enqueued_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
        )
        one.commit()  # the first takes the slot
    thread.join(timeout=30)
    assert second == {"free": False}


# -- rate limits ---------------------------------------------------------------------------------
def test_the_annotator_limit_keys_on_the_token_however_the_header_is_spelt(limited):
    app = limited(RATELIMIT_ANNOTATOR="2 per minute")
    owner = Owner(app.test_client())
    cid = owner.campaign()["id"]
    token = owner.annotators(cid, 1)[0]
    client = app.test_client()
    spellings = (f"Bearer {token}", f"bearer {token}", f"Bearer  {token}")
    codes = [client.get("/api/me", headers={"Authorization": s}).status_code for s in spellings]
    assert codes == [200, 200, 429]


def test_failed_authentication_is_throttled_per_address(limited):
    app = limited(RATELIMIT_AUTH_FAILURES="3 per minute")
    owner = Owner(app.test_client())
    cid = owner.campaign()["id"]
    token = owner.annotators(cid, 1)[0]
    guesser = {"REMOTE_ADDR": "203.0.113.9"}
    client = app.test_client()
    codes = [
        client.get("/api/me", headers=bearer(new_token()), environ_base=guesser).status_code
        for _ in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]
    # Further failures from the address are refused, owner endpoints included...
    refused = client.get("/api/campaigns", headers=bearer("nope"), environ_base=guesser)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    # ...and nobody else's requests are.
    other = {"REMOTE_ADDR": "198.51.100.7"}
    assert client.get("/api/me", headers=bearer(token), environ_base=other).status_code == 200
    assert client.get("/api/me", headers=bearer("nope"), environ_base=other).status_code == 401


def test_a_valid_credential_never_pays_for_failures_behind_its_address(limited):
    """A lab's NAT: one client sends bad tokens past the failure limit (the default, 30 per
    minute); the owner key and the annotator token of others behind the same address still
    work, and only further bad tokens are refused."""
    app = limited()
    owner = Owner(app.test_client())
    cid = owner.campaign()["id"]
    token = owner.annotators(cid, 1)[0]
    key = new_token()
    with app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab", key_hash=hash_token(key)))
        session.commit()
    nat = {"REMOTE_ADDR": "203.0.113.20"}
    client = app.test_client()
    codes = [
        client.get("/api/me", headers=bearer(new_token()), environ_base=nat).status_code
        for _ in range(31)
    ]
    assert codes == [401] * 30 + [429]
    owned = client.get("/api/campaigns", headers=bearer(key), environ_base=nat)
    assert owned.status_code == 200, owned.json
    assert client.get("/api/me", headers=bearer(token), environ_base=nat).status_code == 200
    assert client.get("/api/tasks/next", headers=bearer(token), environ_base=nat).status_code in (
        200,
        204,
    )
    created = client.post("/api/campaigns", json={"prompt": "a pear"}, headers=bearer(key),
                          environ_base=nat)  # fmt: skip
    assert created.status_code == 201, created.json
    for headers in (bearer(new_token()), bearer("x"), {}):
        refused = client.get("/api/me", headers=headers, environ_base=nat)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    refused = client.get("/api/campaigns", headers=bearer(new_token()), environ_base=nat)
    assert refused.status_code == 429


def test_owner_endpoints_are_limited(limited):
    app = limited(RATELIMIT_OWNER="2 per minute")
    owner = Owner(app.test_client())
    assert [owner.get("/api/campaigns").status_code for _ in range(3)] == [200, 200, 429]


def test_preview_renders_have_a_tighter_limit_of_their_own(limited):
    app = limited(RATELIMIT_PREVIEW="2 per minute")
    owner = Owner(app.test_client())
    codes = [owner.post("/api/previews", json={"prompt": "a pear"}).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert owner.get("/api/campaigns").status_code == 200  # the owner's other calls go on


@pytest.mark.parametrize(("proxies", "second"), [(1, 302), (0, 429)])
def test_the_join_limit_counts_the_client_behind_trusted_proxies(limited, proxies, second):
    app = limited(RATELIMIT_JOIN="1 per minute", PROXY_COUNT=proxies)
    cid = Owner(app.test_client()).campaign(start=True, recruit=True)["id"]
    client = app.test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}  # every request arrives from the proxy
    codes = [
        client.get(
            f"/join/{cid}?PROLIFIC_PID=p{n}",
            headers={"X-Forwarded-For": f"192.0.2.{n}"},
            environ_base=proxy,
        ).status_code
        for n in (1, 2)
    ]
    assert codes == [302, second]


# -- the object store ----------------------------------------------------------------------------
def test_object_errors_do_not_reveal_the_store_path(app, owner):
    cid = owner.campaign(start=True)["id"]
    missing = app.test_client().get(f"/objects/campaigns/{cid}/rounds/0000/images/00.png")
    root = str(app.extensions["rankloop_store"].root)
    assert missing.status_code == 404 and root not in missing.get_data(as_text=True)
    with pytest.raises(NotFound) as error:
        LocalStore(root).get("campaigns/x/rounds/0000/images/00.png")
    assert root not in str(error.value)


def test_the_local_store_refuses_links_out_of_its_root(app, owner, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not yours")
    cid = owner.campaign(start=True)["id"]
    store = app.extensions["rankloop_store"]
    key = f"campaigns/{cid}/rounds/0000/images/linked.png"
    (store.root / key).parent.mkdir(parents=True)
    os.symlink(outside, store.root / key)
    with pytest.raises(InvalidInput, match="outside the store"):
        store.get(key)
    assert not store.exists(key)
    assert app.test_client().get(f"/objects/{key}").status_code == 404


# -- the campaign list -----------------------------------------------------------------------------
def test_the_campaign_list_is_paginated(app, owner):
    ids = [owner.campaign(name=f"c{n}")["id"] for n in range(3)]
    first = owner.get("/api/campaigns?limit=2").json
    second = owner.get(f"/api/campaigns?limit=2&offset={first['next_offset']}").json
    assert first["next_offset"] == 2 and second["next_offset"] is None
    listed = [c["id"] for c in first["campaigns"] + second["campaigns"]]
    assert sorted(listed) == sorted(ids) and len(set(listed)) == 3
    assert owner.get("/api/campaigns").json["next_offset"] is None
    for bad in ("limit=0", "limit=501", "limit=abc", "offset=-1", "limit=%C2%B2"):
        assert owner.get(f"/api/campaigns?{bad}").status_code == 400, bad


def test_the_annotator_list_is_paginated_as_its_document_says(app, owner):
    cid = owner.campaign()["id"]
    made = owner.post(f"/api/campaigns/{cid}/annotators", json={"count": 3}).json["annotators"]
    base = f"/api/campaigns/{cid}/annotators"
    first = owner.get(f"{base}?limit=2").json
    second = owner.get(f"{base}?limit=2&offset={first['next_offset']}").json
    assert len(first["annotators"]) == 2 and first["next_offset"] == 2
    assert len(second["annotators"]) == 1 and second["next_offset"] is None
    listed = [a["id"] for a in first["annotators"] + second["annotators"]]
    assert sorted(listed) == sorted(a["id"] for a in made)  # each once
    assert len(owner.get(f"{base}?limit=1").json["annotators"]) == 1
    assert owner.get(base).json["next_offset"] is None
    for bad in ("limit=0", "limit=501", "limit=abc", "offset=-1"):
        assert owner.get(f"{base}?{bad}").status_code == 400, bad
    document = app.test_client().get("/api/openapi.json").json
    parameters = document["paths"]["/api/campaigns/{campaign_id}/annotators"]["get"]["parameters"]
    assert {"limit", "offset"} <= {p["name"] for p in parameters}
