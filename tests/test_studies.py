"""Studies (issue 19): made from a prompt list in every accepted format, refused with the bad
row's line and nothing half-made, one recruitment link, workers routed across the study's
campaigns (never a round twice, never over a quorum, the closest round to its quorum first),
the study's quota and completion code, start/pause/stop, the export, and tenancy.

Every test runs on SQLite and on PostgreSQL (the ``app`` fixture of tests/fixtures/coordinator).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from sqlalchemy import func, select

from rankloop.core.study_settings import MAX_STUDY_PROMPTS
from service import db
from service.auth import hash_token, new_token
from service.models import Annotator, Campaign, OwnerKey, Study
from tests.fixtures.coordinator import Owner, bearer
from tests.fixtures.coordinator import render_round as render_with_check

# Small rounds: quorum 2, at most 2 rounds of one prompt per worker.
SHARED = {"m": 4, "annotators_per_round": 2, "rounds": 3, "tasks_per_annotator": 2}
PROMPTS = ["a red apple", "a green pear", "a yellow lemon"]


def render_round(app: Flask, campaign_id: str, number: int) -> None:
    """A round rendered without an attention check: a test's rankings need not find it."""
    render_with_check(app, campaign_id, number, attention=False)


def make_study(owner: Owner, prompts: Any = PROMPTS, **fields: Any) -> dict:
    body = {"name": "fruit", "prompts": prompts, "settings": SHARED, **fields}
    response = owner.post("/api/studies", json=body)
    assert response.status_code == 201, response.json
    return response.json


def upload(owner: Owner, data: bytes, filename: str, **fields: Any):
    form = {
        "file": (io.BytesIO(data), filename),
        "study": json.dumps({"name": "up", "settings": SHARED, **fields}),
    }
    return owner.post("/api/studies", data=form, content_type="multipart/form-data")


def running_study(app: Flask, owner: Owner, **fields: Any) -> dict:
    study = make_study(owner, start=True, recruit=True, **fields)
    assert study["status"] == "running"
    for campaign in study["campaigns"]:
        assert campaign["status"] == "running" and campaign["current_round_status"] == "rendering"
        render_round(app, campaign["id"], 0)
    return study


def join(app: Flask, study_id: str, participant: str) -> str:
    response = app.test_client().get(f"/join/study/{study_id}?PROLIFIC_PID={participant}")
    assert response.status_code == 302, response.json
    fragment = parse_qs(urlsplit(response.headers["Location"]).fragment)
    assert fragment["study"] == [study_id]
    return fragment["token"][0]


def rank(app: Flask, token: str, key: Any = None) -> dict | None:
    """The worker's next task, ranked (in the order shown, or sorted by ``key``); None when
    there is none."""
    client = app.test_client()
    response = client.get("/api/tasks/next", headers=bearer(token))
    if response.status_code == 204:
        return None
    task = response.json
    shown = task["images"] if key is None else sorted(task["images"], key=key)
    order = {"order": [image["id"] for image in shown]}
    sent = client.post(f"/api/tasks/{task['task_id']}/ranking", json=order, headers=bearer(token))
    assert sent.status_code == 201, sent.json
    return task


def other_owner(app: Flask) -> Owner:
    key = new_token()
    with app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab b", key_hash=hash_token(key)))
        session.commit()
    lab = Owner(app.test_client())
    lab._h = lambda headers=None: {**bearer(key), **(headers or {})}  # type: ignore[method-assign]
    return lab


def count(app: Flask, model: type) -> int:
    with app.app_context(), db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- creating ----------------------------------------------------------------------------------


def test_a_study_is_made_from_a_json_list_with_one_campaign_per_prompt(app, owner):
    rows = ["a red apple", {"prompt": "a pear", "negative_prompt": "blurry", "seed": 7}]
    study = make_study(owner, rows, completion_code="ABC123", tasks_per_worker=5)
    assert study["status"] == "draft" and study["prompts"] == 2
    assert study["completion_code"] == "ABC123" and study["tasks_per_worker"] == 5
    assert study["link"].startswith(f"http://localhost/join/study/{study['id']}?PROLIFIC_PID=")
    assert [c["prompt"] for c in study["campaigns"]] == ["a red apple", "a pear"]
    assert all(c["status"] == "draft" and c["current_round"] is None for c in study["campaigns"])
    pear = owner.get(f"/api/campaigns/{study['campaigns'][1]['id']}").json
    assert pear["settings"]["negative_prompt"] == "blurry" and pear["settings"]["seed"] == 7
    assert pear["settings"]["annotators_per_round"] == 2 and pear["completion_code"] == "ABC123"
    # A campaign on its own works as it always did, beside the study.
    alone = owner.campaign()
    assert [s["id"] for s in owner.get("/api/studies").json["studies"]] == [study["id"]]
    assert alone["id"] not in {c["id"] for c in study["campaigns"]}
    # The campaign list is the campaigns on their own: a study's are listed in the study.
    assert [c["id"] for c in owner.get("/api/campaigns").json["campaigns"]] == [alone["id"]]


def test_a_study_is_made_from_lines_csv_jsonl_and_parquet(app, owner):
    made = [make_study(owner, "a red apple\na green pear\n")]
    csv = b'prompt,negative_prompt,seed\na red apple,,\n"a pear, ripe",blurry,3\n'
    made.append(upload(owner, csv, "prompts.csv").json)
    jsonl = b'{"prompt": "a red apple"}\n\n{"prompt": "a pear, ripe", "seed": 3}\n'
    made.append(upload(owner, jsonl, "prompts.jsonl").json)
    made.append(upload(owner, b"a red apple\na pear, ripe\n", "prompts.txt").json)
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pyarrow.table({"prompt": ["a red apple", "a pear, ripe"], "seed": [None, 3]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    made.append(upload(owner, buffer.getvalue(), "prompts.parquet").json)
    for study in made:
        assert study["prompts"] == 2, study
    # The blank line of the plain list is refused (a missing prompt), the others' are skipped.
    assert [c["prompt"] for c in made[1]["campaigns"]] == ["a red apple", "a pear, ripe"]
    seeded = owner.get(f"/api/campaigns/{made[4]['campaigns'][1]['id']}").json
    assert seeded["settings"]["seed"] == 3
    negative = owner.get(f"/api/campaigns/{made[1]['campaigns'][1]['id']}").json
    assert negative["settings"]["negative_prompt"] == "blurry"


def test_a_blank_line_in_a_plain_list_is_refused_with_its_line(app, owner):
    response = owner.post("/api/studies", json={"prompts": "a red apple\n\na pear\n"})
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["line"] == 2


@pytest.mark.parametrize(
    ("data", "filename", "line", "words"),
    [
        (b"text,seed\na red apple,1\n", "p.csv", 1, "no 'prompt' column"),
        (b"prompt,seed\na red apple,1\na pear,one\n", "p.csv", 3, "seed must be a whole number"),
        (b"prompt,seed\na red apple,1\n,4\n", "p.csv", 3, "no prompt"),
        (b"prompt\na red apple\n,\n", "p.csv", 3, "more fields than the header"),
        (b'{"prompt": "a red apple"}\n{"prompt": \n', "p.jsonl", 2, "not JSON"),
        (b'{"prompt": "a red apple"}\n{"text": "a pear"}\n', "p.jsonl", 2, "unknown column"),
        (b"a red apple\na pear\x00\n", "p.txt", 2, "NUL byte"),
        (b"prompt\n", "p.csv", None, "no prompt"),
        (b"", "p.txt", None, "no prompt"),
        (b"prompt,m\na red apple,99\n", "p.csv", 2, "unknown column"),
    ],
)
def test_a_bad_prompt_file_is_refused_with_its_line_and_nothing_is_made(
    app, owner, data, filename, line, words
):
    response = upload(owner, data, filename)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert words in error["message"] and error["details"][0]["line"] == line
    assert count(app, Study) == 0 and count(app, Campaign) == 0


def test_a_row_a_campaign_would_refuse_names_its_line(app, owner):
    long = "x" * 2001  # over MAX_PROMPT
    response = owner.post("/api/studies", json={"prompts": ["a red apple", "a pear", long]})
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["line"] == 3
    bad_setting = owner.post("/api/studies", json={"prompts": ["a"], "settings": {"m": 0}})
    assert bad_setting.status_code == 422
    assert bad_setting.json["error"]["details"][0]["field"] == "settings.m"
    study_wide = owner.post("/api/studies", json={"prompts": ["a"], "settings": {"recruit": True}})
    assert study_wide.status_code == 422
    unlisted = {"generator": "diffusers", "model": "/etc/passwd"}  # not the operator's model
    refused = owner.post("/api/studies", json={"prompts": ["a"], "settings": unlisted})
    assert refused.status_code == 422 and "model" in refused.json["error"]["message"]
    assert count(app, Study) == 0 and count(app, Campaign) == 0


def test_too_many_prompts_an_empty_list_and_no_prompts_are_refused(app, owner):
    too_many = "\n".join(f"p{n}" for n in range(MAX_STUDY_PROMPTS + 1))
    response = owner.post("/api/studies", json={"prompts": too_many})
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["line"] == MAX_STUDY_PROMPTS + 1
    for body in ({"prompts": []}, {"prompts": ""}, {}, {"prompts": [3]}, {"prompts": 3}):
        assert owner.post("/api/studies", json=body).status_code == 422, body
    assert count(app, Study) == 0 and count(app, Campaign) == 0


# -- the link, the routing, the quota ------------------------------------------------------------


def test_the_study_link_keeps_the_identity_rules_and_the_cap(app, owner):
    study = make_study(owner, recruit=True, recruit_cap=1)
    client = app.test_client()
    url = f"/join/study/{study['id']}"
    assert client.get(url).status_code == 400  # no participant id, no identity
    assert client.get(f"{url}?PROLIFIC_PID=%7B%7B%25PROLIFIC_PID%25%7D%7D").status_code == 400
    token = join(app, study["id"], "p1")
    again = client.get(f"{url}?PROLIFIC_PID=p1")  # no takeover: the holder keeps the token
    assert again.status_code == 302
    assert again.headers["Location"].endswith(f"#rejoin={study['id']}")
    assert client.get("/api/me", headers=bearer(token)).status_code == 200
    assert client.get(f"{url}?PROLIFIC_PID=p2").status_code == 409  # the cap
    assert client.get(f"/join/study/{'0' * 32}?PROLIFIC_PID=p3").status_code == 404
    closed = make_study(owner)  # recruit off
    assert client.get(f"/join/study/{closed['id']}?PROLIFIC_PID=p1").status_code == 403
    assert count(app, Annotator) == 1
    assert owner.get(f"/api/studies/{study['id']}").json["workers"] == 1


def test_a_worker_is_routed_across_the_study_and_gets_its_code_after_its_quota(app, owner):
    study = running_study(app, owner, tasks_per_worker=3, completion_code="DONE42")
    shown = owner.get(f"/api/studies/{study['id']}").json["campaigns"]
    assert all(c["best_image_url"].startswith("/objects/campaigns/") for c in shown)
    assert all(c["best_image_url"] is None for c in study["campaigns"])  # before the render
    token = join(app, study["id"], "p1")
    seen = []
    while (task := rank(app, token)) is not None:
        seen.append((task["campaign_id"], task["round"]))
    # One worker, three prompts: each one's open round, then the quota is met.
    assert sorted(seen) == sorted((c["id"], 0) for c in study["campaigns"])
    me = app.test_client().get("/api/me", headers=bearer(token)).json
    assert me["tasks_done"] == 3 and me["tasks_quota"] == 3
    (worker,) = owner.get(f"/api/studies/{study['id']}/workers").json["workers"]
    assert (worker["participant_id"], worker["tasks_done"]) == ("p1", 3)
    assert worker["completion_code"] == "DONE42"
    assert me["completion_code"] == "DONE42" and me["completion_url"] is None
    assert me["waiting"]["reason"] == "quota_reached"


def test_a_worker_ranks_one_prompt_at_most_its_cap(app, owner):
    study = running_study(app, owner, prompts=["a red apple"], tasks_per_worker=10)
    cid = study["campaigns"][0]["id"]
    tokens = [join(app, study["id"], f"p{n}") for n in range(3)]
    for token in tokens[:2]:
        assert rank(app, token) is not None
    render_round(app, cid, 1)  # the first round closed on its quorum
    assert rank(app, tokens[0]) is not None  # a second round of the prompt: within the cap (2)
    assert rank(app, tokens[2]) is not None
    render_round(app, cid, 2)
    # The cap per worker and prompt (tasks_per_annotator): a third round is not for them.
    assert app.test_client().get("/api/tasks/next", headers=bearer(tokens[0])).status_code == 204
    assert rank(app, tokens[1]) is not None


def test_the_round_closest_to_its_quorum_goes_first_and_never_over_it(app, owner):
    study = running_study(app, owner)
    tokens = [join(app, study["id"], f"p{n}") for n in range(4)]
    client = app.test_client()
    leased = [client.get("/api/tasks/next", headers=bearer(t)).json for t in tokens]
    where = [(task["campaign_id"], task["round"]) for task in leased]
    # The second worker completes the first one's round; the third and fourth the next one's.
    assert where[0] == where[1] and where[2] == where[3] and where[0] != where[2]
    first = rank(app, tokens[0])
    assert first is not None and (first["campaign_id"], first["round"]) == where[0]
    # A worker never gets a round they ranked, even when it is the only one left to complete.
    nxt = client.get("/api/tasks/next", headers=bearer(tokens[0])).json
    assert (nxt["campaign_id"], nxt["round"]) not in (where[0], where[2])


def render_pending(app: Flask, owner: Owner, study_id: str) -> None:
    """Play the render worker for every campaign of the study whose next round waits for it."""
    for campaign in owner.get(f"/api/studies/{study_id}").json["campaigns"]:
        if campaign["status"] == "running" and campaign["current_round_status"] == "rendering":
            render_round(app, campaign["id"], campaign["current_round"])


def test_a_worker_never_gets_a_round_twice_and_every_round_is_reached(app, owner):
    study = running_study(app, owner, tasks_per_worker=100, settings={**SHARED, "rounds": 2})
    tokens = [join(app, study["id"], f"p{n}") for n in range(3)]
    ranked: dict[str, list] = {t: [] for t in tokens}
    for _ in range(20):
        tasks = [(token, rank(app, token)) for token in tokens]
        for token, task in tasks:
            if task is not None:
                ranked[token].append((task["campaign_id"], task["round"]))
        if not any(task for _, task in tasks):
            render_pending(app, owner, study["id"])
    for keys in ranked.values():
        assert len(keys) == len(set(keys))  # never a round twice
    shown = owner.get(f"/api/studies/{study['id']}").json
    # Every round of every prompt was ranked to its quorum: the study is done.
    assert shown["campaigns_by_status"] == {"finished": 3}
    assert shown["rankings"] == 3 * 2 * 2 and shown["rounds_closed"] == 6
    reached = {key for keys in ranked.values() for key in keys}
    assert reached == {(c["id"], n) for c in study["campaigns"] for n in (0, 1)}
    # Nothing is left to rank: the study has finished, and its workers have their code.
    assert shown["status"] == "finished"
    me = app.test_client().get("/api/me", headers=bearer(tokens[0])).json
    assert me["completion_code"] == study["completion_code"]
    assert me["waiting"]["reason"] == "finished"
    late = app.test_client().get(f"/join/study/{study['id']}?PROLIFIC_PID=late")
    assert late.status_code == 410


def test_pause_and_stop_act_on_every_campaign_and_the_stop_gives_the_code(app, owner):
    study = running_study(app, owner, tasks_per_worker=10)
    token = join(app, study["id"], "p1")
    assert rank(app, token) is not None
    client = app.test_client()
    paused = owner.post(f"/api/studies/{study['id']}/pause").json
    assert paused["status"] == "paused"
    assert {c["status"] for c in paused["campaigns"]} == {"paused"}
    assert client.get("/api/tasks/next", headers=bearer(token)).status_code == 204
    assert client.get("/api/me", headers=bearer(token)).json["waiting"]["reason"] == "paused"
    assert owner.post(f"/api/studies/{study['id']}/pause").status_code == 409
    assert owner.post(f"/api/studies/{study['id']}/start").json["status"] == "running"
    assert client.get("/api/tasks/next", headers=bearer(token)).status_code == 200
    stopped = owner.post(f"/api/studies/{study['id']}/stop").json
    assert stopped["status"] == "stopped" and stopped["finished_at"]
    assert {c["status"] for c in stopped["campaigns"]} == {"stopped"}
    me = client.get("/api/me", headers=bearer(token)).json
    assert (
        me["completion_code"] == study["completion_code"] and me["waiting"]["reason"] == "finished"
    )
    assert client.get(f"/join/study/{study['id']}?PROLIFIC_PID=p9").status_code == 410


def test_the_export_concatenates_the_campaigns_with_their_prompt(app, owner):
    study = running_study(app, owner)
    token = join(app, study["id"], "p1")
    tasks = [rank(app, token), rank(app, token)]
    lines = owner.get(f"/api/studies/{study['id']}/export").data.decode().splitlines()
    records = [json.loads(line) for line in lines]
    prompts = {c["id"]: c["prompt"] for c in study["campaigns"]}
    assert sorted(r["campaign_id"] for r in records) == sorted(t["campaign_id"] for t in tasks)
    assert all(r["prompt"] == prompts[r["campaign_id"]] for r in records)
    assert owner.get(f"/api/studies/{study['id']}/export?format=csv").status_code == 400
    # A dataset table: one file for the whole study, every row naming its campaign and prompt.
    table = owner.get(f"/api/studies/{study['id']}/export?format=rankings.jsonl")
    rows = [json.loads(line) for line in table.data.decode().splitlines()]
    assert sorted(r["campaign_id"] for r in rows) == sorted(t["campaign_id"] for t in tasks)
    assert all(r["prompt"] == prompts[r["campaign_id"]] for r in rows)
    pq = pytest.importorskip("pyarrow.parquet")
    parquet = owner.get(f"/api/studies/{study['id']}/export?format=pairs.parquet&images=key")
    assert parquet.status_code == 200, parquet.data[:300]
    pairs = pq.read_table(io.BytesIO(parquet.data)).to_pylist()
    assert {p["campaign_id"] for p in pairs} == {t["campaign_id"] for t in tasks}
    assert {p["caption"] for p in pairs} == {prompts[t["campaign_id"]] for t in tasks}


def test_another_owner_sees_no_study(app, owner):
    study = make_study(owner)
    lab = other_owner(app)
    assert lab.get("/api/studies").json["studies"] == []
    for response in (
        lab.get(f"/api/studies/{study['id']}"),
        lab.post(f"/api/studies/{study['id']}/start"),
        lab.get(f"/api/studies/{study['id']}/export"),
        lab.get(f"/api/studies/{study['id']}/workers"),
    ):
        assert response.status_code == 404
    assert owner.get(f"/api/studies/{study['id']}").json["status"] == "draft"
    mine = lab.post("/api/studies", json={"prompts": ["a plum"]}).json
    assert [s["id"] for s in lab.get("/api/studies").json["studies"]] == [mine["id"]]
    assert app.test_client().get("/api/studies").status_code == 401


def _at_once(fns: list) -> list:
    """Run the callables in threads released together; their results, in order."""
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)

    def run(n: int) -> None:
        barrier.wait(timeout=60)
        results[n] = fns[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(fns))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_workers_leasing_at_once_never_take_a_round_over_its_quorum(app, owner):
    """Twelve study workers ask at the same moment (PostgreSQL's concurrent writers): three
    rounds of quorum two give six tasks, two a round, and the other six are told none."""
    if db.get_engine(app).dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's: SQLite serves the one-process demo")
    study = running_study(app, owner, recruit_cap=50)
    tokens = [join(app, study["id"], f"p{n}") for n in range(12)]

    def fetch(token: str):
        def ask():
            answer = app.test_client().get("/api/tasks/next", headers=bearer(token))
            while answer.status_code == 409:  # "fetch the next task again", as the page does
                answer = app.test_client().get("/api/tasks/next", headers=bearer(token))
            return answer

        return ask

    answers = _at_once([fetch(token) for token in tokens])
    leased = [a.json for a in answers if a.status_code == 200]
    assert sorted(a.status_code for a in answers) == [200] * 6 + [204] * 6
    per_round: dict[tuple, int] = {}
    for task in leased:
        key = (task["campaign_id"], task["round"])
        per_round[key] = per_round.get(key, 0) + 1
    assert sorted(per_round.values()) == [2, 2, 2]


def test_joins_at_once_never_pass_the_study_cap(app, owner):
    if db.get_engine(app).dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's: SQLite serves the one-process demo")
    study = make_study(owner, recruit=True, recruit_cap=3)

    def visit(n: int):
        return lambda: app.test_client().get(f"/join/study/{study['id']}?PROLIFIC_PID=w{n % 6}")

    statuses = sorted(r.status_code for r in _at_once([visit(n) for n in range(12)]))
    assert 409 in statuses and set(statuses) <= {302, 409}
    assert count(app, Annotator) == 3


def test_a_study_workers_waiting_stream_follows_its_study_only(app, owner):
    """The waiting page's stream: a round opening in the study tells its worker, one of a
    campaign outside the study does not, and pausing the study tells them at once."""
    from tests.test_stream import open_stream

    study = make_study(owner, start=True, recruit=True)
    token = join(app, study["id"], "p1")
    outside = owner.campaign(start=True)["id"]
    events = open_stream(owner, "/api/tasks/stream", **bearer(token))
    try:
        first = {"pool": True, "open_rounds": 0, "latest_round": None, "study_status": "running"}
        assert events.next() == ("waiting", first)
        render_round(app, outside, 0)  # another owner's work: not this worker's
        render_round(app, study["campaigns"][0]["id"], 0)
        assert events.next()[1]["open_rounds"] == 1
        render_round(app, study["campaigns"][1]["id"], 0)
        assert events.next()[1]["open_rounds"] == 2
        assert owner.post(f"/api/studies/{study['id']}/pause").status_code == 200
        # The study pauses first, then its campaigns: one event or two.
        state = events.next()[1]
        assert state["study_status"] == "paused"
        if state["open_rounds"]:
            state = events.next()[1]
        assert (state["open_rounds"], state["study_status"]) == (0, "paused")
    finally:
        events.close()


def test_a_duplicate_has_the_prompts_their_overrides_and_a_code_of_its_own(app, owner):
    rows = ["a red apple", {"prompt": "a pear", "negative_prompt": "blurry", "seed": 7}]
    url = "https://app.prolific.com/submissions/complete?cc=ABC123"
    study = make_study(owner, rows, completion_url=url, tasks_per_worker=5, pay_per_hour=9.5)
    owner.post(f"/api/studies/{study['id']}/start")
    copy = owner.post(f"/api/studies/{study['id']}/duplicate", json={"name": "again"})
    assert copy.status_code == 201, copy.json
    made = copy.json
    assert made["id"] != study["id"] and made["status"] == "draft" and made["name"] == "again"
    assert [c["prompt"] for c in made["campaigns"]] == ["a red apple", "a pear"]
    assert made["completion_code"] != "ABC123" and made["completion_url"] is None
    assert made["tasks_per_worker"] == 5 and made["pay_per_hour"] == 9.5
    assert made["settings"] == study["settings"] == SHARED
    pear = owner.get(f"/api/campaigns/{made['campaigns'][1]['id']}").json["settings"]
    apple = owner.get(f"/api/campaigns/{made['campaigns'][0]['id']}").json["settings"]
    assert (pear["negative_prompt"], pear["seed"]) == ("blurry", 7)
    assert (apple["negative_prompt"], apple["seed"]) == ("", 0)
    lab = other_owner(app)
    assert lab.post(f"/api/studies/{study['id']}/duplicate", json={}).status_code == 404


def test_the_study_says_what_its_rankings_cost_and_what_is_left(app, owner):
    study = running_study(app, owner, pay_per_hour=12.0)
    shown = owner.get(f"/api/studies/{study['id']}").json["costs"]
    # Three prompts, three rounds each, quorum two: eighteen rankings to make, none made.
    assert shown == {"task_s_median": None, "rankings_last_hour": 0, "spent": 0.0,
                     "rankings_left": 18, "to_finish": None, "rankings_saved": 0,
                     "saved": None, "worker_s": 0.0, "idle_share": None}  # fmt: skip
    token = join(app, study["id"], "p1")
    assert rank(app, token) is not None and rank(app, token) is not None
    shown = owner.get(f"/api/studies/{study['id']}").json["costs"]
    assert shown["rankings_left"] == 16 and shown["rankings_last_hour"] == 2
    assert shown["task_s_median"] >= 0 and shown["spent"] >= 0
    assert shown["to_finish"] == pytest.approx(12.0 * 16 * shown["task_s_median"] / 3600)
    # The worker's time on the study covers their two tasks; the rest of it is idle.
    assert shown["worker_s"] >= 2 * shown["task_s_median"] >= 0
    assert shown["idle_share"] is None or 0 <= shown["idle_share"] <= 1


def test_the_study_says_what_an_adaptive_quorum_saved(app, owner):
    adaptive = {**SHARED, "quorum": "adaptive", "min_annotators_per_round": 2,
                "annotators_per_round": 4}  # fmt: skip
    study = running_study(app, owner, prompts=["a red apple"], settings=adaptive, pay_per_hour=12.0)
    campaign_id = study["campaigns"][0]["id"]
    # Two workers who rank the same way: the round's decision is settled at the minimum.
    for participant in ("p1", "p2"):
        assert rank(app, join(app, study["id"], participant), key=lambda image: image["id"])
    first = owner.get(f"/api/campaigns/{campaign_id}/rounds/0").json
    assert (first["status"], first["close_reason"], len(first["rankings"])) == (
        "closed",
        "settled",
        2,
    )
    shown = owner.get(f"/api/studies/{study['id']}").json["costs"]
    assert shown["rankings_saved"] == 4 - 2
    assert shown["saved"] == pytest.approx(12.0 * 2 * shown["task_s_median"] / 3600)
    # A fixed quorum closes at its cap: it saves nothing.
    fixed = running_study(app, owner, prompts=["a pear"])
    for participant in ("q1", "q2"):
        assert rank(app, join(app, fixed["id"], participant))
    assert owner.get(f"/api/studies/{fixed['id']}").json["costs"]["rankings_saved"] == 0


def test_the_idle_share_is_the_workers_time_on_the_study_not_on_a_ranked_task(app, owner):
    study = running_study(app, owner, pay_per_hour=12.0)
    token = join(app, study["id"], "p1")
    assert rank(app, token) is not None and rank(app, token) is not None
    with app.app_context(), db.session_scope() as session:
        worker = session.scalar(select(Annotator).where(Annotator.study_id == study["id"]))
        assert worker is not None and worker.last_seen is not None
        worker.created_at = worker.last_seen - dt.timedelta(minutes=10)  # joined 10 min before
        session.commit()
    shown = owner.get(f"/api/studies/{study['id']}").json["costs"]
    on_task = shown["spent"] * 3600 / 12.0  # the two tasks' lease-to-ranking seconds
    assert shown["worker_s"] == pytest.approx(600.0)
    assert shown["idle_share"] == pytest.approx(1 - on_task / 600.0)
