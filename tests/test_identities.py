"""Identities (issue 13): recruitment only when the owner opens it, a rejoin takes nothing from
the holder of an identity, and the attention check cannot be beaten without looking.

The API tests run on SQLite and PostgreSQL (the ``app`` fixture of tests/fixtures/coordinator).
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote

import pytest

from rankloop.core.storage import LocalStore, image_name
from service import db
from service.ranking_rules import attention_passed, display_order
from tests.fixtures.coordinator import bearer, render_round


def test_recruitment_is_off_until_the_owner_turns_it_on(app, owner):
    closed = owner.campaign(start=True)["id"]
    client = app.test_client()
    refused = client.get(f"/join/{closed}?PROLIFIC_PID=p1")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    assert owner.get(f"/api/campaigns/{closed}/recruit").json["enabled"] is False
    listed = owner.get(f"/api/campaigns/{closed}/annotators").json["annotators"]
    assert listed == []  # nobody was minted

    opened = owner.campaign(start=True, recruit=True)["id"]
    assert owner.get(f"/api/campaigns/{opened}/recruit").json["enabled"] is True
    for anonymous in (
        f"/join/{opened}",
        f"/join/{opened}?PROLIFIC_PID=",
        f"/join/{opened}?workerId=%20",
    ):
        response = client.get(anonymous)
        assert response.status_code == 400, anonymous
    assert owner.get(f"/api/campaigns/{opened}/annotators").json["annotators"] == []
    joined = client.get(f"/join/{opened}?PROLIFIC_PID=p1")
    assert joined.status_code == 302 and joined.location.startswith("/task#token=")


def test_a_rejoin_with_a_known_participant_id_takes_nothing_from_its_holder(app, owner):
    cid = owner.campaign(start=True, recruit=True, annotators_per_round=1)["id"]
    render_round(app, cid, 0)
    holder, intruder = app.test_client(), app.test_client()
    token = holder.get(f"/join/{cid}?PROLIFIC_PID=alice").location.split("#token=")[1]
    task = holder.get("/api/tasks/next", headers=bearer(token)).json

    again = intruder.get(f"/join/{cid}?PROLIFIC_PID=alice")
    assert again.status_code == 302 and again.location == f"/task#rejoin={cid}"
    assert "token=" not in again.location and again.headers["Cache-Control"] == "no-store"

    # The holder keeps the identity and the leased task, and can finish it.
    assert holder.get("/api/me", headers=bearer(token)).status_code == 200
    same = holder.get("/api/tasks/next", headers=bearer(token)).json
    assert same["task_id"] == task["task_id"]
    order = {"order": [i["id"] for i in task["images"]]}
    submitted = holder.post(
        f"/api/tasks/{task['task_id']}/ranking", json=order, headers=bearer(token)
    )
    assert submitted.status_code == 201, submitted.json
    annotators = owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
    assert [(a["participant_id"], a["n_rankings"]) for a in annotators] == [("alice", 1)]


def test_token_bearing_responses_are_not_stored(app, owner):
    cid = owner.campaign(start=True, recruit=True)["id"]
    created = owner.post(f"/api/campaigns/{cid}/annotators", json={"count": 1})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    token = created.json["annotators"][0]["token"]
    client = app.test_client()
    assert client.get("/api/me", headers=bearer(token)).headers["Cache-Control"] == "no-store"
    joined = client.get(f"/join/{cid}?workerId=w1")
    assert joined.status_code == 302 and joined.headers["Cache-Control"] == "no-store"
    # A stream ticket is a credential for a minute; the recruit view names the completion code.
    tickets = (
        owner.post(f"/api/campaigns/{cid}/stream-ticket"),
        client.post("/api/tasks/stream-ticket", headers=bearer(token)),
    )
    for ticket in tickets:
        assert ticket.status_code == 200 and ticket.headers["Cache-Control"] == "no-store"
    # So do the owner's views of the campaign and of an annotator (the code issued to them).
    annotator = created.json["annotators"][0]["id"]
    for url in ("recruit", "", f"annotators/{annotator}"):
        shown = owner.get(f"/api/campaigns/{cid}/{url}".rstrip("/"))
        assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store", url
    assert owner.get("/api/campaigns").headers["Cache-Control"] == "no-store"


PROLIFIC_DONE = "https://app.prolific.com/submissions/complete?cc=C0FFEE12"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_the_owner_sets_the_completion_code_and_url(app, owner):
    # The code comes from the URL's cc when only the URL is given, and must agree with it.
    made = owner.campaign(completion_url=PROLIFIC_DONE)
    assert made["completion_code"] == "C0FFEE12"
    assert made["settings"]["completion_url"] == PROLIFIC_DONE
    assert "completion_code" not in made["settings"]  # kept once, in its own field
    assert owner.campaign(completion_code="MTURK-7")["completion_code"] == "MTURK-7"
    for wrong in (
        {"completion_url": PROLIFIC_DONE, "completion_code": "OTHER"},
        {"completion_url": "http://app.prolific.com/submissions/complete?cc=X"},  # not https
        {"completion_url": "javascript:alert(1)"},
        {"completion_url": "https://x.example/?cc=no%20code"},
        {"completion_code": "has space"},
        {"completion_code": "x" * 33},
    ):
        response = owner.post("/api/campaigns", json={"prompt": "p", **wrong})
        assert response.status_code == 422, (wrong, response.json)

    cid = owner.campaign(start=True, recruit=True, tasks_per_annotator=1,
                         annotators_per_round=1, completion_url=PROLIFIC_DONE)["id"]  # fmt: skip
    render_round(app, cid, 0)
    recruit = owner.get(f"/api/campaigns/{cid}/recruit").json
    assert recruit["completion_url"] == PROLIFIC_DONE and recruit["completion_code"] == "C0FFEE12"
    client = app.test_client()
    token = client.get(f"/join/{cid}?PROLIFIC_PID=p1").location.split("#token=")[1]
    before = client.get("/api/me", headers=bearer(token)).json
    assert before["completion_code"] is None and before["completion_url"] is None
    task = client.get("/api/tasks/next", headers=bearer(token)).json
    order = {"order": [i["id"] for i in task["images"]]}
    client.post(f"/api/tasks/{task['task_id']}/ranking", json=order, headers=bearer(token))
    after = client.get("/api/me", headers=bearer(token)).json
    assert (after["completion_code"], after["completion_url"]) == ("C0FFEE12", PROLIFIC_DONE)


def test_join_keeps_the_platforms_ids_and_the_cap_counts_participants_only(app, owner):
    cid = owner.campaign(start=True, recruit=True, recruit_cap=2)["id"]
    owner.annotators(cid, 3)  # links made by hand: not the crowd the cap is for
    client = app.test_client()
    prolific = client.get(f"/join/{cid}?PROLIFIC_PID=p1&STUDY_ID=s1&SESSION_ID=x1&other=1")
    mturk = client.get(f"/join/{cid}?workerId=w1&assignmentId=a1&hitId=h1")
    assert prolific.status_code == 302 and mturk.status_code == 302
    full = client.get(f"/join/{cid}?PROLIFIC_PID=p3")
    assert full.status_code == 409 and full.json["error"]["code"] == "conflict"
    recruit = owner.get(f"/api/campaigns/{cid}/recruit").json
    assert (recruit["cap"], recruit["joined"], recruit["owner_links"]) == (2, 2, 3)
    assert "STUDY_ID={{%STUDY_ID%}}" in recruit["link"]
    assert "SESSION_ID={{%SESSION_ID%}}" in recruit["link"]
    listed = owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
    contexts = {
        a["participant_id"]: owner.get(f"/api/campaigns/{cid}/annotators/{a['id']}").json[
            "participant_context"
        ]
        for a in listed
        if a["participant_id"]
    }
    assert contexts == {
        "p1": {"study_id": "s1", "session_id": "x1"},
        "w1": {"assignment_id": "a1", "hit_id": "h1"},
    }


PLACEHOLDERS = (
    "PROLIFIC_PID={{%PROLIFIC_PID%}}",
    "PROLIFIC_PID=%PROLIFIC_PID%",
    "PROLIFIC_PID={{%STUDY_ID%}}",
    "workerId=${workerId}",
    "workerId=ASSIGNMENT_ID_NOT_AVAILABLE",
    "participant_id= {{%PROLIFIC_PID%}} ",
)


def test_a_placeholder_the_platform_left_unfilled_is_no_participant_id(app, owner):
    cid = owner.campaign(start=True, recruit=True)["id"]
    client = app.test_client()
    for query in PLACEHOLDERS:
        name, _, value = query.partition("=")
        url = f"/join/{cid}?{name}={quote(value)}"
        refused = client.get(url)
        assert refused.status_code == 400, query
        assert refused.json["error"]["code"] == "invalid_input", query
        assert "placeholder" in refused.json["error"]["message"]
        page = client.get(url, headers={**BROWSER, "Accept-Language": "de"})
        assert (page.status_code, page.mimetype) == (400, "text/html"), query
    assert owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"] == []
    # A real id joins; a context value left as its placeholder is not kept.
    joined = client.get(
        f"/join/{cid}?PROLIFIC_PID=5f1e&STUDY_ID={quote('{{%STUDY_ID%}}')}&SESSION_ID=s9"
    )
    assert joined.status_code == 302 and "#token=" in joined.location
    listed = owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
    assert [a["participant_id"] for a in listed] == ["5f1e"]
    shown = owner.get(f"/api/campaigns/{cid}/annotators/{listed[0]['id']}").json
    assert shown["participant_context"] == {"session_id": "s9"}


def test_join_refusals_are_pages_in_the_workers_language(app, owner):
    from service.join_pages import PAGES

    client = app.test_client()
    ended = owner.campaign(start=True, recruit=True)["id"]
    assert owner.post(f"/api/campaigns/{ended}/stop").status_code == 200
    closed = owner.campaign(start=True)["id"]
    full = owner.campaign(start=True, recruit=True, recruit_cap=0)["id"]
    opened = owner.campaign(start=True, recruit=True)["id"]
    cases = {
        "/join/nope?PROLIFIC_PID=p": ("unknown", 404),
        f"/join/{ended}?PROLIFIC_PID=p": ("ended", 410),
        f"/join/{closed}?PROLIFIC_PID=p": ("not_recruiting", 403),
        f"/join/{full}?PROLIFIC_PID=p": ("full", 409),
        f"/join/{opened}": ("no_participant", 400),
        f"/join/{opened}?PROLIFIC_PID={quote('{{%PROLIFIC_PID%}}')}": ("placeholder", 400),
    }
    for language, asked in (("en", "en-GB,en;q=0.9"), ("de", "de-DE,de;q=0.9,en;q=0.5"),
                            ("es", "es"), ("en", "fr-FR,fr;q=0.9")):  # fmt: skip
        for url, (reason, status) in cases.items():
            page = client.get(url, headers={**BROWSER, "Accept-Language": asked})
            title, _text = PAGES[language][reason]
            html = page.get_data(as_text=True)
            assert (page.status_code, page.mimetype) == (status, "text/html"), (url, asked)
            assert (
                f'<html lang="{language}">' in html and f'<h1 id="join-title">{title}</h1>' in html
            )
            assert "{" not in html.split("<body", 1)[1]  # no JSON, no template left unfilled
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    # An API client (asking for JSON, or for nothing) still gets the JSON error.
    for headers in ({"Accept": "application/json"}, {}):
        response = client.get(f"/join/{full}?PROLIFIC_PID=p", headers=headers)
        assert response.status_code == 409 and response.json["error"]["code"] == "conflict"
    # MTurk's preview (the HIT not yet accepted) admits nobody and says to accept it.
    preview = client.get(f"/join/{opened}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=h")
    assert preview.status_code == 200 and PAGES["en"]["preview"][0] in preview.get_data(True)
    assert owner.get(f"/api/campaigns/{opened}/recruit").json["joined"] == 0


class _Shown:
    def __init__(self, position: int, role: str) -> None:
        self.id, self.position, self.role = f"i{position}", position, role


def test_a_tie_with_the_attention_image_never_passes_it():
    images = [_Shown(0, "candidate"), _Shown(1, "candidate"), _Shown(2, "attention")]
    assert attention_passed([[0, 1, 2]], images) is False  # everything tied
    assert attention_passed([0, [1, 2]], images) is False  # tied with the last candidate
    assert attention_passed([0, 1, 2], images) is True
    assert attention_passed([[0, 1], 2], images) is True  # candidates tied, attention last


def test_the_display_order_says_nothing_about_positions():
    # The same image ids at other positions (the attention image elsewhere): the same order on
    # screen, so reproducing the order (its seed is the annotator's own id) reveals nothing.
    ids = ["b1", "e7", "03", "9c", "d4"]
    shown = [_Shown(p, "candidate") for p in range(5)]
    moved = [_Shown(4 - p, "attention" if p == 0 else "candidate") for p in range(5)]
    for image, other, image_id in zip(shown, moved, ids, strict=True):
        image.id = other.id = image_id
    first = [i.id for i in display_order("annotator", 7, shown)]
    assert first == [i.id for i in display_order("annotator", 7, list(reversed(moved)))]
    assert sorted(first) == sorted(ids)


def test_an_all_tied_answer_fails_the_attention_check_through_the_api(app, owner):
    cid = owner.campaign(start=True, allow_ties=True)["id"]
    render_round(app, cid, 0)
    token = owner.annotators(cid, 1)[0]
    client = app.test_client()
    task = client.get("/api/tasks/next", headers=bearer(token)).json
    tied = {"order": [[i["id"] for i in task["images"]]]}
    response = client.post(
        f"/api/tasks/{task['task_id']}/ranking", json=tied, headers=bearer(token)
    )
    assert response.status_code == 201 and response.json["attention_passed"] is False


def test_image_keys_reveal_neither_index_nor_role(tmp_path):
    from gpu_worker.render import render_round as worker_render

    store = LocalStore(tmp_path)
    settings = {"generator": "cppn", "m": 4, "width": 32, "height": 32, "image_salt": "s3cret"}
    result = worker_render(store, "c" * 32, 0, settings)
    keys = [i["key"] for i in result["images"]] + [i["thumb_key"] for i in result["images"]]
    keys += [result["best"]["key"], result["best"]["thumb_key"]]
    for key in keys:
        name = key.rsplit("/", 1)[1]
        assert re.fullmatch(r"[0-9a-f]{32}\.(png|webp)", name), key
        assert store.exists(key)
    # The names are a keyed digest: the same on a re-render, another without the campaign's salt.
    attention = next(i for i in result["images"] if i["role"] == "attention")
    name = image_name("c" * 32, 0, attention["index"], 0, "s3cret")
    assert attention["key"].endswith(f"/images/{name}.png")
    assert image_name("c" * 32, 0, attention["index"], 0, "") != name


def test_the_coordinator_gives_each_campaign_a_secret_for_image_names(app, owner):
    from service import db
    from service.models import Campaign
    from service.render_messages import render_message

    first, second = (owner.campaign(start=True)["id"] for _ in range(2))
    with app.app_context(), db.session_scope() as session:
        salts = []
        for cid in (first, second):
            campaign = session.get(Campaign, cid)
            message = render_message(campaign, campaign.rounds[0])
            salts.append(message.settings.image_salt)
    assert all(len(s) >= 32 for s in salts) and salts[0] != salts[1]


@pytest.mark.browser
@pytest.mark.slow
def test_the_study_link_reopened_continues_in_the_same_browser_only(tmp_path, browser):
    import threading

    from werkzeug.serving import make_server

    from service import db
    from tests.fixtures.coordinator import Owner, make_app

    app = make_app(tmp_path)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    same, other = browser.new_context(), browser.new_context()
    try:
        owner = Owner(app.test_client())
        cid = owner.campaign(start=True, recruit=True, annotators_per_round=1)["id"]
        render_round(app, cid, 0)
        link = f"http://127.0.0.1:{http.server_port}/join/{cid}?PROLIFIC_PID=alice"
        first = same.new_page()
        first.goto(link)
        first.wait_for_selector("#task:not([hidden]) .tile", timeout=20_000)
        task_id = first.get_attribute("#task", "data-task-id")

        # The same participant opens the study link again in the same browser: the same task.
        again = same.new_page()
        again.goto(link)
        again.wait_for_selector("#task:not([hidden]) .tile", timeout=20_000)
        assert again.get_attribute("#task", "data-task-id") == task_id
        assert "rejoin" not in again.url and "token" not in again.url

        # Somebody else with alice's participant id gets nothing of hers.
        stranger = other.new_page()
        stranger.goto(link)
        stranger.wait_for_selector("#status:not([hidden])", timeout=20_000)
        assert "already joined" in stranger.text_content("#status")
        assert stranger.evaluate("sessionStorage.getItem('rankloop.token')") is None
    finally:
        same.close()
        other.close()
        http.shutdown()
        db.get_engine(app).dispose()


def test_concurrent_joins_of_one_new_participant_make_one_annotator(app, owner):
    """Ten joins of one new participant at once (a double click, a platform that opens the
    link twice) on PostgreSQL: every one is answered as a join, never a 500; one annotator and
    one token are made, and the rest are sent on as a second visit is."""
    if db.get_engine(app).dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's: SQLite serves the one-process demo")
    cid = ""
    barrier = threading.Barrier(10)
    answers: list[tuple[int, str | None]] = []

    def join() -> None:
        client = app.test_client()
        barrier.wait(timeout=60)
        response = client.get(f"/join/{cid}?PROLIFIC_PID=5f1e-twice")
        answers.append((response.status_code, response.location))

    for _ in range(4):  # the race is not certain on one try: four rounds of ten
        answers.clear()
        cid = owner.campaign(start=True, recruit=True)["id"]
        threads = [threading.Thread(target=join) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert [status for status, _ in answers] == [302] * 10, answers
        tokens = [location for _, location in answers if "#token=" in (location or "")]
        assert len(tokens) == 1, answers
        rejoins = [location for _, location in answers if location == f"/task#rejoin={cid}"]
        assert len(rejoins) == 9, answers
        listed = owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
        assert [a["participant_id"] for a in listed] == ["5f1e-twice"]
        token = tokens[0].split("#token=")[1]
        assert app.test_client().get("/api/me", headers=bearer(token)).status_code == 200


def test_a_join_that_loses_the_unique_constraint_is_answered_as_a_rejoin(app, owner, monkeypatch):
    """Should another join of the participant win the unique constraint after this one read
    (no lock held it back), the insert is undone under its savepoint and the answer is the
    second visit's, with the first join's annotator, not a 500."""
    from service.api import recruitment

    cid = owner.campaign(start=True, recruit=True)["id"]
    client = app.test_client()
    first = client.get(f"/join/{cid}?workerId=W1RACE")
    assert first.status_code == 302 and "#token=" in first.location
    reads = []
    real = recruitment._participant_annotator

    def blind_twice(session, campaign_id, participant):
        reads.append(participant)
        return None if len(reads) <= 2 else real(session, campaign_id, participant)

    monkeypatch.setattr(recruitment, "_participant_annotator", blind_twice)
    again = client.get(f"/join/{cid}?workerId=W1RACE")
    assert again.status_code == 302 and again.location == f"/task#rejoin={cid}", again.data
    assert len(reads) == 3  # before the lock, under it, and after the constraint refused
    monkeypatch.undo()
    listed = owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
    assert [a["participant_id"] for a in listed] == ["W1RACE"]
    token = first.location.split("#token=")[1]
    assert client.get("/api/me", headers=bearer(token)).status_code == 200
    events = owner.get(f"/api/campaigns/{cid}/events").json["events"]
    assert [e["kind"] for e in events].count("annotator_joined") == 1
