"""Hostile input (issue 13): one tenant's settings cannot break the others, and malformed
input is a clear 4xx, never a 500. Every test runs on SQLite and on PostgreSQL where it touches
the database (the ``app`` fixture of tests/fixtures/coordinator)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, update

from rankloop.core.consensus import METHODS
from rankloop.core.optimizer.options import DEFAULT_OPTIONS
from rankloop.core.optimizer_schema import OptimizerOptions
from service import db
from service.models import AuditEvent, Campaign, Ranking
from tests.fixtures.coordinator import ADMIN, bearer, render_round

CAMPAIGNS = "/api/campaigns"


def post_raw(client, url: str, text: str, token: str | None = ADMIN):
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    return client.post(url, data=text, headers=headers)


def assert_json_error(response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    error = response.json["error"]
    assert error["message"], error
    return error


# -- one tenant must not break the others ------------------------------------------------------


def test_an_unknown_consensus_method_is_refused_at_create(app, owner):
    error = assert_json_error(
        owner.post(CAMPAIGNS, json={"prompt": "x", "consensus_method": "no-such"}), 422
    )
    assert "consensus_method" in error["message"]
    for method in METHODS:
        assert (
            owner.post(CAMPAIGNS, json={"prompt": "x", "consensus_method": method}).status_code
            == 201
        )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_numbers_are_refused_by_the_parser(app, owner, constant):
    body = '{"prompt": "x", "optimizer": {"step": CONSTANT}}'.replace("CONSTANT", constant)
    error = assert_json_error(post_raw(owner.client, CAMPAIGNS, body), 400)
    assert "finite" in error["message"]
    assert owner.get(CAMPAIGNS).json["campaigns"] == []


@pytest.mark.parametrize(
    "options",
    [
        {"step": "1"},
        {"step": 0},
        {"momentum": 1.0},
        {"gradient_rounds": 2.5},
        {"shell": "yes"},
        {"schedule": "sometimes"},
        {"no_such_option": 1},
        {"min_visible": 0.5},  # above the default max_visible: a rule of resolve_options
        [1, 2],
    ],
)
def test_optimizer_options_are_typed(app, owner, options):
    response = owner.post(CAMPAIGNS, json={"prompt": "x", "optimizer": options})
    assert "optimizer" in assert_json_error(response, 422)["message"]


def test_optimizer_options_set_are_stored_as_given(app, owner):
    campaign = owner.campaign(optimizer={"step": 2, "shell": True})
    assert campaign["settings"]["optimizer"] == {"step": 2.0, "shell": True}


def test_the_typed_options_are_the_optimizer_s_options():
    # One fact, one place: the names and defaults come from rankloop.core.optimizer.options.
    fields = OptimizerOptions.model_fields
    assert set(fields) == set(DEFAULT_OPTIONS)
    assert {name: f.default for name, f in fields.items()} == DEFAULT_OPTIONS
    assert OptimizerOptions().given() == {}


def test_responses_carry_no_non_finite_number(app):
    assert json.loads(app.json.dumps({"a": [1.0, float("inf")], "b": float("nan")})) == {
        "a": [1.0, None],
        "b": None,
    }


def test_a_failing_inline_close_keeps_the_submission_and_is_recorded(app, owner):
    # A campaign stored before settings were checked (an unknown consensus method): the
    # quorum-completing submission is stored and answered 201, the failure audited.
    campaign = owner.campaign(start=True)
    with app.app_context(), db.session_scope() as session:
        settings = {**campaign["settings"], "consensus_method": "no-such"}
        session.execute(
            update(Campaign).where(Campaign.id == campaign["id"]).values(settings=settings)
        )
        session.commit()
    render_round(app, campaign["id"], 0)
    client = app.test_client()
    for token in owner.annotators(campaign["id"], 2):
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        order = {"order": [image["id"] for image in task["images"]]}
        url = f"/api/tasks/{task['task_id']}/ranking"
        assert client.post(url, json=order, headers=bearer(token)).status_code == 201
    with app.app_context(), db.session_scope() as session:
        assert len(session.scalars(select(Ranking)).all()) == 2
        (failure,) = session.scalars(select(AuditEvent).where(AuditEvent.kind == "close_failed"))
        assert failure.campaign_id == campaign["id"] and "no-such" in failure.data["error"]
    assert owner.get(f"{CAMPAIGNS}/{campaign['id']}").json["current_round"]["status"] == "open"


# -- malformed input, never a 500 ----------------------------------------------------------------


@pytest.mark.parametrize("token", [ADMIN, "not-a-token", None])
def test_json_nested_a_thousand_deep_is_a_400(app, token):
    client = app.test_client()
    deep = "[" * 1000 + "]" * 1000
    for url in (CAMPAIGNS, "/api/tasks/t/ranking"):
        response = post_raw(
            client, url, '{"prompt": "x", "order": DEEP}'.replace("DEEP", deep), token
        )
        assert_json_error(response, 400, 401)
    assert_json_error(post_raw(client, CAMPAIGNS, deep, ADMIN), 400)


def test_nul_bytes_are_a_4xx(app, owner):
    client = app.test_client()
    for field in ("prompt", "name", "negative_prompt", "model", "scheduler"):
        body = {"prompt": "x", field: "a\x00b"}
        assert field in assert_json_error(owner.post(CAMPAIGNS, json=body), 422)["message"]
    cid = owner.campaign(start=True)["id"]
    assert_json_error(owner.get(f"{CAMPAIGNS}/a%00b"), 400)
    assert_json_error(owner.post(f"{CAMPAIGNS}/a%00b/start"), 400)
    assert_json_error(client.get("/join/a%00b?PROLIFIC_PID=p"), 400)
    assert_json_error(client.get(f"/join/{cid}?PROLIFIC_PID=a%00b"), 400)
    assert_json_error(client.get(f"/join/{cid}?workerId=a%00b"), 400)
    (token,) = owner.annotators(cid, 1)
    response = client.post("/api/tasks/t/ranking", json={"order": ["a\x00"]}, headers=bearer(token))
    assert_json_error(response, 422)
    assert_json_error(client.post("/api/tasks/a%00/ranking", json={"order": ["a"]}), 400)


@pytest.mark.parametrize(
    "body", [{"start": "yes"}, {"m": "8"}, {"allow_ties": 1}, {"round_deadline_s": "60"}]
)
def test_types_are_strict(app, owner, body):
    assert_json_error(owner.post(CAMPAIGNS, json={"prompt": "x", **body}), 422)


def test_an_empty_tie_group_is_refused_as_the_document_says(app, owner):
    cid = owner.campaign()["id"]
    (token,) = owner.annotators(cid, 1)
    client = app.test_client()
    response = client.post("/api/tasks/t/ranking", json={"order": [[]]}, headers=bearer(token))
    assert_json_error(response, 422)
    schemas = client.get("/api/openapi.json").json["components"]["schemas"]
    (tie,) = [s for s in schemas["RankingSubmit"]["properties"]["order"]["items"]["anyOf"]
              if s.get("type") == "array"]  # fmt: skip
    assert tie["minItems"] == 1
    assert "at most m" in schemas["CampaignCreate"]["properties"]["k"]["description"]


def test_methods_not_allowed_are_405_with_allow(app, owner):
    client = app.test_client()
    response = client.open(CAMPAIGNS, method="TRACE")
    assert_json_error(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    cid = owner.campaign()["id"]
    response = owner.post(f"{CAMPAIGNS}/{cid}/export")
    assert_json_error(response, 405)
    assert "GET" in response.headers["Allow"]
    assert_json_error(owner.post(f"{CAMPAIGNS}/{cid}/explode"), 404)
