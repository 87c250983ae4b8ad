"""The JSON API through Flask's test client: owners, annotators, bad input, the document.

Every test runs on SQLite and on PostgreSQL (the ``app`` fixture of tests/fixtures/coordinator).
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from rankloop.core.contracts import heartbeat_key
from rankloop.core.settings import settings_of
from tests.fixtures.coordinator import (
    ADMIN,
    Owner,
    bearer,
    make_app,
    render_round,
    stamp_head,
    tiny_png,
)


@pytest.fixture
def app(app: Flask) -> Flask:  # the coordinator's, on both databases, with a public address
    settings_of(app).base_url = "https://rank.example"
    return app


def running(owner: Owner, app, **settings) -> tuple[str, list[str]]:
    campaign = owner.campaign(start=True, **settings)
    assert campaign["status"] == "running"
    assert campaign["current_round"]["status"] == "rendering"
    render_round(app, campaign["id"], 0)
    return campaign["id"], owner.annotators(campaign["id"], 3)


def test_owner_creates_starts_and_reads_a_campaign(app, owner):
    cid, tokens = running(owner, app)
    client = app.test_client()
    task = client.get("/api/tasks/next", headers=bearer(tokens[0])).json
    assert task["round"] == 0 and task["k"] is None and task["prompt"] == "a red apple"
    assert len(task["images"]) == 5 and all(
        i["url"].startswith("/objects/") for i in task["images"]
    )
    assert client.get(task["images"][0]["url"]).status_code == 200
    ids = [i["id"] for i in task["images"]]
    response = client.post(
        f"/api/tasks/{task['task_id']}/ranking", json={"order": ids}, headers=bearer(tokens[0])
    )
    assert response.status_code == 201, response.json
    second = client.get("/api/tasks/next", headers=bearer(tokens[1])).json
    client.post(
        f"/api/tasks/{second['task_id']}/ranking", json={"order": ids}, headers=bearer(tokens[1])
    )
    doc = owner.get(f"/api/campaigns/{cid}").json
    assert doc["history"][0]["status"] == "closed" and doc["history"][0]["n_rankings"] == 2
    assert doc["current_round"]["number"] == 1 and doc["current_round"]["status"] == "rendering"
    assert doc["best_image_url"].startswith("/objects/campaigns/")
    closed = doc["history"][0]
    assert closed["agreement"] is not None and closed["stats"] == {"step": 0.5, "moved": True}
    assert [c["id"] for c in owner.get("/api/campaigns").json["campaigns"]] == [cid]
    annotators = owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
    weights = [a["weight"] for a in annotators if a["n_rankings"]]
    # weights come from the campaign's reliability model once a round has closed
    assert len(weights) == 2 and all(isinstance(w, float) for w in weights)
    lines = owner.get(f"/api/campaigns/{cid}/export?format=jsonl").data.decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["order"] for r in records] == [ids, ids]
    assert records[0]["order_keys"][0].startswith(f"campaigns/{cid}/rounds/0000/images/")
    assert owner.post(f"/api/campaigns/{cid}/pause").json["status"] == "paused"
    assert owner.post(f"/api/campaigns/{cid}/pause").status_code == 409
    assert owner.post(f"/api/campaigns/{cid}/resume").json["status"] == "running"
    assert owner.post(f"/api/campaigns/{cid}/stop").json["status"] == "stopped"


def test_a_ranking_sent_after_the_stop_is_refused_and_counts_nowhere(app, owner):
    cid, tokens = running(owner, app)
    client = app.test_client()
    task = client.get("/api/tasks/next", headers=bearer(tokens[0])).json
    ids = [i["id"] for i in task["images"]]
    assert owner.post(f"/api/campaigns/{cid}/stop").json["status"] == "stopped"
    response = client.post(
        f"/api/tasks/{task['task_id']}/ranking", json={"order": ids}, headers=bearer(tokens[0])
    )
    assert response.status_code == 409, response.json
    assert "stopped" in response.json["error"]["message"]
    doc = owner.get(f"/api/campaigns/{cid}").json
    assert doc["current_round"]["rankings_count"] == 0
    assert owner.get(f"/api/campaigns/{cid}/export?format=jsonl").data == b""


def test_annotator_links_me_and_completion_code(app, owner):
    cid, _ = running(owner, app, tasks_per_annotator=1)
    links = owner.post(f"/api/campaigns/{cid}/annotators", json={"count": 2}).json["annotators"]
    assert links[0]["link"] == f"https://rank.example/task#token={links[0]['token']}"
    client = app.test_client()
    token = links[0]["token"]
    assert client.get("/api/me", headers=bearer(token)).json["completion_code"] is None
    task = client.get("/api/tasks/next", headers=bearer(token)).json
    client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": [i["id"] for i in task["images"]]},
                headers=bearer(token))  # fmt: skip
    me = client.get("/api/me", headers=bearer(token)).json
    code = owner.get(f"/api/campaigns/{cid}").json["completion_code"]
    waiting = {"reason": "quota_reached", "rankings_needed": None, "render_estimate_s": None}
    assert me == {"annotator_id": links[0]["id"], "campaign_id": cid, "tasks_done": 1,
                  "tasks_quota": 1, "completion_code": code, "completion_url": None,
                  "attention_failed": False, "completion_withheld_reason": None, "waiting": waiting}  # fmt: skip
    listed = {a["id"]: a for a in owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]}
    assert listed[links[0]["id"]]["n_rankings"] == 1 and "idle" in listed[links[1]["id"]]["flags"]


def rank_attention_first(app, owner, cid: str, token: str) -> None:
    """One task of the annotator with ``token``, the attention image ranked best (a failure)."""
    client = app.test_client()
    task = client.get("/api/tasks/next", headers=bearer(token)).json
    shown = owner.get(f"/api/campaigns/{cid}").json["current_round"]["images"]
    attention = {i["id"] for i in shown if i["role"] == "attention"}
    order = sorted((i["id"] for i in task["images"]), key=lambda i: i not in attention)
    response = client.post(
        f"/api/tasks/{task['task_id']}/ranking", json={"order": order}, headers=bearer(token)
    )
    assert response.status_code == 201 and response.json["attention_passed"] is False


@pytest.mark.parametrize("policy", [{"max_attention_failures": 0}, {}])
def test_a_worker_who_failed_the_attention_checks_gets_no_code_and_is_told(app, owner, policy):
    # Quota 2 over two rounds, both checks failed: over the default (more than half, at least
    # 2) and over an explicit limit of 0.
    cid, tokens = running(owner, app, tasks_per_annotator=2, annotators_per_round=1, **policy)
    client = app.test_client()
    bad = tokens[0]
    rank_attention_first(app, owner, cid, bad)
    render_round(app, cid, 1)
    rank_attention_first(app, owner, cid, bad)
    me = client.get("/api/me", headers=bearer(bad)).json
    assert me["tasks_done"] == 2 and me["completion_code"] is None
    assert me["attention_failed"] is True
    assert me["completion_withheld_reason"] == "attention_checks"
    listed = {a["id"]: a for a in owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]}
    bad_id = me["annotator_id"]
    assert listed[bad_id]["completion_withheld"] is True
    assert "code_withheld" in listed[bad_id]["flags"]
    detail = owner.get(f"/api/campaigns/{cid}/annotators/{bad_id}").json
    assert detail["completion_withheld"] is True and detail["completion_code"] is None
    # The campaign ends: the code an ended campaign issues is withheld from them as well.
    assert owner.post(f"/api/campaigns/{cid}/stop").json["status"] == "stopped"
    assert client.get("/api/me", headers=bearer(bad)).json["completion_code"] is None


def test_the_task_lists_the_attention_image_at_no_fixed_place(app, owner):
    cid, _ = running(owner, app, annotators_per_round=12)
    shown = owner.get(f"/api/campaigns/{cid}").json["current_round"]["images"]
    (attention,) = [i for i in shown if i["role"] == "attention"]
    client = app.test_client()
    places = []
    for token in owner.annotators(cid, 12):
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        ids = [i["id"] for i in task["images"]]
        assert sorted(ids) == sorted(i["id"] for i in shown)
        # Nothing in the listing names the role.
        assert "attention" not in json.dumps(task)
        places.append(ids.index(attention["id"]))
    # Shuffled per annotator (a digest of the image's random id): 12 annotators, 5 places.
    assert len(set(places)) >= 3, places


def test_one_failed_check_keeps_the_code_by_default(app, owner):
    cid, tokens = running(owner, app, tasks_per_annotator=1, annotators_per_round=1)
    rank_attention_first(app, owner, cid, tokens[0])
    me = app.test_client().get("/api/me", headers=bearer(tokens[0])).json
    assert me["completion_code"] == owner.get(f"/api/campaigns/{cid}").json["completion_code"]
    assert me["attention_failed"] is False and me["completion_withheld_reason"] is None


def test_recruitment_link_creates_finds_and_caps(app, owner):
    campaign = owner.campaign(recruit=True, recruit_cap=2, start=True)
    cid = campaign["id"]
    recruit = owner.get(f"/api/campaigns/{cid}/recruit").json
    assert (
        recruit["cap"] == 2
        and recruit["enabled"]
        and recruit["link"].startswith(f"https://rank.example/join/{cid}?PROLIFIC_PID=")
    )
    client = app.test_client()
    first = client.get(f"/join/{cid}?PROLIFIC_PID=p1")
    assert first.status_code == 302 and first.location.startswith("/task#token=")
    again = client.get(f"/join/{cid}?PROLIFIC_PID=p1")
    assert again.status_code == 302 and again.location == f"/task#rejoin={cid}"
    token = first.location.split("token=")[1]
    me = client.get("/api/me", headers=bearer(token)).json
    assert me["campaign_id"] == cid  # the first token still works: a rejoin takes nothing
    assert client.get(f"/join/{cid}?workerId=w2").status_code == 302
    full = client.get(f"/join/{cid}?workerId=w3")
    assert full.status_code == 409 and full.json["error"]["code"] == "conflict"
    assert client.get("/join/nope?PROLIFIC_PID=x").status_code == 404
    ids = {
        a["participant_id"]
        for a in owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
    }
    assert ids == {"p1", "w2"}


BAD_CAMPAIGNS = [
    None,
    [],
    {},
    {"prompt": ""},
    {"prompt": "x", "generator": "dalle"},
    {"prompt": "x", "m": 1},
    {"prompt": "x", "m": 4, "k": 5},
    {"prompt": "x", "width": 500},
    {"prompt": "x", "annotators_per_round": 0},
    {"prompt": "x", "rounds": "many"},
    {"prompt": "x", "unknown_field": 1},
    {"prompt": "x", "round_deadline_s": -1},
]


@pytest.mark.parametrize("body", BAD_CAMPAIGNS)
def test_bad_campaigns_get_a_4xx_json_error(app, owner, body):
    if body is None:
        response = owner.post(
            "/api/campaigns", data="not json", headers={"Content-Type": "text/plain"}
        )
    else:
        response = owner.post("/api/campaigns", json=body)
    assert response.status_code in (400, 422), response.json
    assert set(response.json["error"]) == {"code", "message", "details"}
    assert response.json["error"]["message"]


def test_auth_errors(app, owner):
    client = app.test_client()
    assert client.get("/api/campaigns").status_code == 401
    assert (
        client.get("/api/campaigns", headers=bearer("wrong")).json["error"]["code"]
        == "unauthorized"
    )
    assert client.get("/api/tasks/next", headers=bearer("wrong")).status_code == 401
    assert client.get("/api/tasks/next", headers={"Authorization": "Basic x"}).status_code == 401
    assert owner.get("/api/campaigns/nope").status_code == 404
    assert owner.post("/api/campaigns/nope/start").status_code == 404
    cid = owner.campaign()["id"]
    assert owner.post(f"/api/campaigns/{cid}/explode").status_code == 404
    assert owner.get(f"/api/campaigns/{cid}/export?format=csv").status_code == 400
    assert owner.post(f"/api/campaigns/{cid}/annotators", json={"count": 0}).status_code == 422
    assert client.get("/api/no-such-route").json["error"]["code"] == "not_found"
    assert client.delete("/api/campaigns").status_code == 405


def test_owner_keys_see_only_their_campaigns(app, owner):
    from click.testing import CliRunner

    from service.cli import db_group

    result = CliRunner().invoke(
        db_group, ["create-owner-key", "--url", settings_of(app).database_url, "--name", "lab"]
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    lab = Owner(app.test_client())
    lab._h = lambda headers=None: {"Authorization": f"Bearer {key}", **(headers or {})}  # type: ignore[method-assign]
    mine = lab.campaign()["id"]
    admins = owner.campaign()["id"]
    assert [c["id"] for c in lab.get("/api/campaigns").json["campaigns"]] == [mine]
    assert lab.get(f"/api/campaigns/{admins}").status_code == 403
    assert {c["id"] for c in owner.get("/api/campaigns").json["campaigns"]} == {mine, admins}
    pool = lab.post(f"/api/campaigns/{mine}/annotators", json={"count": 1, "pool": True})
    assert pool.status_code == 403  # pool annotators would reach other owners' campaigns
    assert (
        owner.post(
            f"/api/campaigns/{admins}/annotators", json={"count": 1, "pool": True}
        ).status_code
        == 201
    )


def test_bad_rankings_late_repeated_and_foreign(app, owner):
    cid, tokens = running(owner, app, k=2)
    client = app.test_client()
    task = client.get("/api/tasks/next", headers=bearer(tokens[0])).json
    again = client.get("/api/tasks/next", headers=bearer(tokens[0])).json
    assert again == task  # a reload: same lease, same order
    ids = [i["id"] for i in task["images"]]
    url = f"/api/tasks/{task['task_id']}/ranking"
    for body in ({}, {"order": []}, {"order": "abc"}, {"order": [ids[0]]}, {"order": [ids[0], ids[0]]},
                 {"order": [ids[0], "nope"]}, {"order": [[ids[0], ids[1]]]}, {"order": [1, 2]}):  # fmt: skip
        response = client.post(url, json=body, headers=bearer(tokens[0]))
        assert response.status_code in (400, 422), (body, response.json)
        assert response.json["error"]["message"]
    foreign = client.post(url, json={"order": ids[:2]}, headers=bearer(tokens[1]))
    assert foreign.status_code == 403
    assert (
        client.post(
            "/api/tasks/nope/ranking", json={"order": ids[:2]}, headers=bearer(tokens[0])
        ).status_code
        == 404
    )
    assert client.post(url, json={"order": ids[:2]}, headers=bearer(tokens[0])).status_code == 201
    retried = client.post(url, json={"order": ids[:2]}, headers=bearer(tokens[0]))
    assert retried.status_code == 201  # the same order again: answered as the first time
    repeated = client.post(url, json={"order": ids[1::-1]}, headers=bearer(tokens[0]))
    assert repeated.status_code == 409 and repeated.json["error"]["code"] == "conflict"
    lines = owner.get(f"/api/campaigns/{cid}/export").data.decode().splitlines()
    assert len(lines) == 1


def test_objects_route_refuses_traversal_and_listing(app, owner):
    cid, _ = running(owner, app)
    client = app.test_client()
    ok = f"/objects/campaigns/{cid}/rounds/0000/images/00.png"
    assert client.get(ok).status_code == 200 and client.get(ok).mimetype == "image/png"
    best = f"/objects/campaigns/{cid}/rounds/0000/best.png"
    assert client.get(best).status_code == 200 and client.get(best).mimetype == "image/png"
    for bad in (f"/objects/campaigns/{cid}/rounds/0000/state.npz", f"/objects/campaigns/{cid}/rounds/0000/",
                f"/objects/campaigns/{cid}/rounds/0000/manifest.json",
                "/objects/../../etc/passwd", f"/objects/campaigns/{cid}/rounds/0000/images/../../../x.png",
                "/objects/campaigns/", f"/objects/campaigns/{cid}/rounds/0000/images/99.png"):  # fmt: skip
        assert client.get(bad).status_code == 404, bad


def test_security_headers_and_rate_limit(tmp_path):
    app = make_app(tmp_path, RATELIMIT_ANNOTATOR="3 per minute")
    client = app.test_client()
    response = client.get("/api/tasks/next", headers=bearer("x"))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src" in response.headers["Content-Security-Policy"]
    codes = [client.get("/api/tasks/next", headers=bearer("x")).status_code for _ in range(3)]
    assert codes[-1] == 429
    assert (
        client.get("/api/tasks/next", headers=bearer("x")).json["error"]["code"]
        == "too_many_requests"
    )


def test_openapi_document_is_valid_and_lists_every_route(app):
    from openapi_spec_validator import validate

    document = app.test_client().get("/api/openapi.json").json
    validate(document)
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    rule: Rule
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/", "/join/", "/objects/")):
            continue
        path = rule.rule.replace("<path:", "{").replace("<", "{").replace(">", "}")
        if "{action}" in path:
            expanded = [path.replace("{action}", a) for a in ("start", "pause", "resume", "stop")]
        else:
            expanded = [path]
        for p in expanded:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (p, method.lower()) in documented, (p, method)


def test_campaigns_store_only_the_optimizer_options_their_owner_set(owner):
    assert owner.campaign()["settings"]["optimizer"] == {}
    custom = owner.campaign(optimizer={"sgd_moves": True, "step": 2.0})
    assert custom["settings"]["optimizer"] == {"sgd_moves": True, "step": 2.0}


DOCUMENT = "urn:rankloop:openapi"  # where the served document sits in the schema registry


class Contract:
    """A client that checks every response against the document the app serves: the reply
    documented for the operation and status, its media type and, for JSON, its schema."""

    def __init__(self, app: Flask):
        self.client = app.test_client()
        self.document = self.client.get("/api/openapi.json").json
        resource = DRAFT202012.create_resource(self.document)
        self.registry = Registry().with_resource(DOCUMENT, resource)
        self.checked: set[tuple[str, str, str]] = set()  # (path, method, status)

    def call(self, method: str, path: str, token: str | None = ADMIN, query: str = "",
             json: Any = None, **parameters: str) -> TestResponse:  # fmt: skip
        """``method`` on the documented ``path`` with its ``{parameters}`` filled in."""
        response = self.client.open(
            path.format(**parameters) + query,
            method=method.upper(),
            headers=bearer(token) if token else {},
            json=json,
        )
        self.check(response, method, path)
        return response

    def check(self, response: TestResponse, method: str, path: str) -> None:
        replies = self.document["paths"][path][method]["responses"]
        status = str(response.status_code)
        reply = replies.get(status) or replies[f"{status[0]}XX"]
        self._conforms(response, reply)
        self.checked.add((path, method, status))

    def check_error(self, response: TestResponse) -> None:
        """A response outside the documented operations (unknown route, wrong method)."""
        self._conforms(response, {"$ref": "#/components/responses/Error"})

    def validator(self, schema_ref: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": DOCUMENT + schema_ref}, registry=self.registry)

    def _conforms(self, response: TestResponse, reply: dict[str, Any]) -> None:
        if "$ref" in reply:
            reply = self.registry.resolver(DOCUMENT).lookup(reply["$ref"]).contents
        content = reply.get("content")
        if content is None:  # no body documented (204, the redirect of /join)
            assert response.mimetype != "application/json", response.json
            return
        assert response.mimetype in content, (response.mimetype, list(content))
        if "schema" not in content[response.mimetype]:
            return
        validator = self.validator(content[response.mimetype]["schema"]["$ref"])
        if response.mimetype == "application/x-ndjson":
            bodies = [json.loads(line) for line in response.text.splitlines()]
        else:
            bodies = [response.json]
        for body in bodies:
            validator.validate(body)


def test_every_endpoint_answers_as_the_served_document_says(app):
    api = Contract(app)
    campaign = "/api/campaigns/{campaign_id}"
    settings = {"prompt": "a red apple", "m": 4, "annotators_per_round": 2, "rounds": 1,
                "tasks_per_annotator": 1, "start": True}  # fmt: skip
    cid = api.call("post", "/api/campaigns", json=settings).json["id"]
    render_round(app, cid, 0)
    links = api.call("post", f"{campaign}/annotators", json={"count": 2}, campaign_id=cid)
    tokens = [a["token"] for a in links.json["annotators"]]
    assert api.call("get", "/api/me", token=tokens[0]).json["completion_code"] is None
    tasks, rankings_sent = [], []
    for token in tokens:  # two rankings make the quorum: the round closes, the campaign ends
        task = api.call("get", "/api/tasks/next", token=token).json
        tasks.append(task)
        reported = api.call("post", "/api/tasks/{task_id}/shown", token=token,
                            json={"load_s": 0.5}, task_id=task["task_id"]).json  # fmt: skip
        assert reported["task_id"] == task["task_id"]
        order = {"order": [i["id"] for i in task["images"]]}
        rankings_sent.append(order)
        ranking = "/api/tasks/{task_id}/ranking"
        assert (
            api.call("post", ranking, token=token, json=order, task_id=task["task_id"]).status_code
            == 201
        )
    assert api.call("get", "/api/tasks/next", token=tokens[0]).status_code == 204
    assert api.call("get", "/api/me", token=tokens[0]).json["completion_code"]
    shown = api.call("get", campaign, campaign_id=cid).json
    assert shown["status"] == "finished" and shown["current_round"]["consensus"]["order"]
    assert [c["id"] for c in api.call("get", "/api/campaigns").json["campaigns"]] == [cid]
    api.call("get", f"{campaign}/annotators", campaign_id=cid)
    detail = api.call("get", f"{campaign}/rounds/{{number}}", campaign_id=cid, number="0").json
    assert [r["order"] for r in detail["rankings"]] == [t["order"] for t in rankings_sent]
    revoke = f"{campaign}/annotators/{{annotator_id}}/revoke"
    second = links.json["annotators"][1]["id"]  # tokens[0] is still needed below
    one = api.call("get", f"{campaign}/annotators/{{annotator_id}}", campaign_id=cid,
                   annotator_id=second).json  # fmt: skip
    assert [r["order"] for r in one["rankings"]] == [rankings_sent[1]["order"]]
    revoked = api.call("post", revoke, json={}, campaign_id=cid, annotator_id=second).json
    assert revoked["excluded"] is False and revoked["revoked_at"]
    archive = api.call("get", f"{campaign}/images.zip", campaign_id=cid)
    assert zipfile.ZipFile(io.BytesIO(archive.data)).namelist() == ["round-0000.png"]
    api.call("get", f"{campaign}/recruit", campaign_id=cid)
    export = api.call("get", f"{campaign}/export", query="?format=jsonl", campaign_id=cid)
    assert len(export.text.splitlines()) == 2
    image = shown["current_round"]["images"][0]["url"].removeprefix("/objects/")
    api.call("get", "/objects/{key}", token=None, key=image)
    api.call("get", "/api/openapi.json", token=None)
    api.call("get", f"{campaign}/events", query="?limit=2", campaign_id=cid)
    settings_of(app).stream_lifetime_s = 0  # whole streams are read: they end at once
    ticket = api.call("post", f"{campaign}/stream-ticket", campaign_id=cid).json["ticket"]
    api.call("get", f"{campaign}/stream", None, f"?ticket={ticket}", campaign_id=cid)
    ticket = api.call("post", "/api/tasks/stream-ticket", token=tokens[0]).json["ticket"]
    api.call("get", "/api/tasks/stream", None, f"?ticket={ticket}")
    preview = api.call("post", "/api/previews", json={"prompt": "a pear"}).json["id"]
    api.call("get", "/api/previews/{preview_id}", preview_id=preview)  # 202: rendering
    failure = b'{"error": "ModelUnavailable: no such model"}'  # as a worker reports one
    app.extensions["rankloop_store"].put(heartbeat_key(preview.split("-")[0], 0), failure)
    api.call("get", "/api/previews/{preview_id}", preview_id=preview)  # 200: failed
    fork = {"round": 0, "prompt": "a red apple, again"}
    forked = api.call("post", f"{campaign}/fork", json=fork, campaign_id=cid).json
    assert (
        forked["status"] == "running" and forked["prompt"] == fork["prompt"] and forked["id"] != cid
    )
    # The verdict: asked of an ended campaign whose delivered image differs from its start.
    pear = api.call("post", "/api/campaigns", json={**settings, "prompt": "a pear", "rounds": 2, "tasks_per_annotator": 2,
                                                   "annotators_per_round": 1}).json["id"]  # fmt: skip
    pear_token = api.call("post", f"{campaign}/annotators", json={"count": 1},
                          campaign_id=pear).json["annotators"][0]["token"]  # fmt: skip
    for number in range(2):
        render_round(app, pear, number)
        task = api.call("get", "/api/tasks/next", token=pear_token).json
        api.call("post", ranking, token=pear_token, json={"order": [i["id"] for i in task["images"]]},
                 task_id=task["task_id"])  # fmt: skip
    asked = api.call("post", f"{campaign}/verdict", campaign_id=pear)
    assert asked.status_code == 202 and asked.json["open"]
    assert api.call("get", f"{campaign}/verdict", campaign_id=pear).json["rounds"] == [2]
    assert api.call("get", "/api/estimate", query="?m=4").json["pay_per_hour"] == 12.0
    curve = api.call("get", f"{campaign}/improvement", campaign_id=pear).json["points"]
    assert [p["round"] for p in curve] == [0, 1]
    api.call("get", "/healthz", token=None)
    api.call("get", "/metrics", token=None)
    # The tables were made without Alembic (db.create_all): not ready until stamped at head.
    assert api.call("get", "/readyz", token=None).json["failed"] == ["migrations"]
    stamp_head(app)
    assert api.call("get", "/readyz", token=None).json["status"] == "ready"
    draft = api.call("post", "/api/campaigns", json={"prompt": "a pear"}).json["id"]
    image_set = api.call(
        "post", "/api/campaigns", json={"prompt": "pears", "kind": "image_set"}
    ).json["id"]
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:  # one item: a prompt and two images
        archive.writestr("pear/prompt.txt", "a pear")
        archive.writestr("pear/a.png", tiny_png(10))
        archive.writestr("pear/b.png", tiny_png(90))
    items = "/api/campaigns/{campaign_id}/items"
    checked = api.client.post(items.format(campaign_id=image_set) + "?dry_run=true",
                              data=bundle.getvalue(), content_type="application/zip",
                              headers=bearer(ADMIN))  # fmt: skip
    api.check(checked, "post", items)
    assert checked.status_code == 200 and checked.json["preview"][0]["prompt"] == "a pear"
    uploaded = api.client.post(items.format(campaign_id=image_set), data=bundle.getvalue(),
                               content_type="application/zip", headers=bearer(ADMIN))  # fmt: skip
    api.check(uploaded, "post", items)
    assert uploaded.status_code == 201 and uploaded.json["items"] == 1
    listed = api.call("get", items, campaign_id=image_set).json["items"]
    assert [item["item_id"] for item in listed] == ["pear"]
    for action in ("start", "pause", "resume", "stop"):
        assert api.call("post", f"{campaign}/{action}", campaign_id=draft).status_code == 200
    plum = api.call(
        "post", "/api/campaigns", json={"prompt": "a plum", "start": True, "recruit": True}
    ).json
    join = "/join/{campaign_id}"
    assert api.call("get", join, None, "?workerId=w", campaign_id=plum["id"]).status_code == 302
    preview = "?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE"
    assert api.call("get", join, None, preview, campaign_id=plum["id"]).status_code == 200

    study_body = {"prompts": ["a fig"], "recruit": True, "settings": {"m": 4}}
    study = api.call("post", "/api/studies", json=study_body).json["id"]
    api.call("get", "/api/studies")
    for action in ("start", "pause", "stop"):
        api.call("post", f"/api/studies/{{study_id}}/{action}", study_id=study)
    api.call("get", "/api/studies/{study_id}/export", study_id=study)
    api.call("post", "/api/studies/{study_id}/duplicate", json={}, study_id=study)
    fig = api.call("post", "/api/studies", json={**study_body, "start": True}).json["id"]
    study_join = "/join/study/{study_id}"
    assert api.call("get", study_join, None, "?workerId=w", study_id=fig).status_code == 302
    assert api.call("get", study_join, None, preview, study_id=fig).status_code == 200
    api.call("get", "/api/studies/{study_id}", study_id=fig)
    api.call("get", "/api/studies/{study_id}/workers", study_id=fig)

    foreign = {"order": [i["id"] for i in tasks[1]["images"]]}
    errors = [
        api.call("get", "/api/campaigns", token=None),
        api.call("get", campaign, campaign_id="nope"),
        api.call("post", f"{campaign}/pause", campaign_id=draft),
        api.call("post", "/api/campaigns", json={"prompt": ""}),
        api.call("get", f"{campaign}/export", query="?format=csv", campaign_id=cid),
        api.call("post", ranking, token=tokens[0], json=foreign, task_id=tasks[1]["task_id"]),
        api.call("get", join, None, "?PROLIFIC_PID=p", campaign_id=cid),
    ]
    assert [e.status_code for e in errors] == [401, 404, 409, 422, 400, 403, 410]
    for response in (api.client.delete("/api/campaigns"), api.client.get("/api/nope")):
        assert response.status_code in (404, 405)
        api.check_error(response)
    # Each documented reply other than the errors was seen, and matched.
    documented = {(path, method, status) for path, operations in api.document["paths"].items()
                  for method, operation in operations.items()
                  for status in operation["responses"] if not status.endswith("XX")}  # fmt: skip
    assert documented <= api.checked, documented - api.checked


def test_a_field_too_many_or_too_few_fails_the_document(app, owner):
    api = Contract(app)
    campaign = owner.campaign(start=True)
    validator = api.validator("#/components/schemas/Campaign")
    validator.validate(campaign)
    broken = [
        {**campaign, "surprise": 1},
        {k: v for k, v in campaign.items() if k != "rounds_done"},
        {**campaign, "current_round": {**campaign["current_round"], "surprise": 1}},
        {**campaign, "status": "sleeping"},
    ]
    for document in broken:
        with pytest.raises(ValidationError):
            validator.validate(document)
