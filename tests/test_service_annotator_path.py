"""The annotator's hot path over HTTP: quotas, links under a mount prefix, rate limits, and
the lean statements behind ``GET /api/tasks/next`` and ``POST /api/tasks/<id>/ranking``
(SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import func, select

from service import db
from service.models import Annotator, Assignment, Ranking, Round
from tests.fixtures.coordinator import bearer, make_app, render_round


def rank(client, token: str) -> dict:
    task = client.get("/api/tasks/next", headers=bearer(token))
    assert task.status_code == 200, task.data
    ids = [i["id"] for i in task.json["images"]]
    response = client.post(
        f"/api/tasks/{task.json['task_id']}/ranking", json={"order": ids}, headers=bearer(token)
    )
    assert response.status_code == 201, response.json
    return task.json


def test_an_annotator_who_met_the_quota_gets_no_more_tasks(app, owner):
    campaign = owner.campaign(annotators_per_round=1, rounds=3, tasks_per_annotator=1, start=True)
    cid = campaign["id"]
    render_round(app, cid, 0)
    done, fresh = owner.annotators(cid, 2)
    client = app.test_client()
    assert client.get("/api/me", headers=bearer(done)).json["completion_code"] is None
    rank(client, done)  # the quorum of one: round 0 closes, round 1 renders
    render_round(app, cid, 1)
    assert client.get("/api/tasks/next", headers=bearer(done)).status_code == 204
    me = client.get("/api/me", headers=bearer(done)).json
    assert me["tasks_done"] == 1 and me["completion_code"] == campaign["completion_code"]
    # Round 1 is open and needs a ranking: the 204 is the quota, not an empty campaign.
    assert rank(client, fresh)["round"] == 1


def test_the_quota_of_a_pool_annotator_counts_per_campaign(app, owner):
    capped = owner.campaign(annotators_per_round=1, rounds=3, tasks_per_annotator=1, start=True)
    other = owner.campaign(annotators_per_round=5, rounds=3, tasks_per_annotator=5, start=True)
    render_round(app, capped["id"], 0)
    render_round(app, other["id"], 0)
    (token,) = owner.annotators(capped["id"], 1, pool=True)
    client = app.test_client()
    served = [rank(client, token)["campaign_id"]]  # the hungrier round first: `other`
    served.append(rank(client, token)["campaign_id"])
    assert sorted(served) == sorted([capped["id"], other["id"]])
    render_round(app, capped["id"], 1)
    # Done with `capped` (its quota is one), ranked `other`'s only open round: nothing left.
    assert client.get("/api/tasks/next", headers=bearer(token)).status_code == 204


def test_join_redirects_under_the_mount_prefix(app, owner):
    cid = owner.campaign(start=True)["id"]
    client = app.test_client()
    mounted = client.get(f"/join/{cid}?PROLIFIC_PID=p1", environ_overrides={"SCRIPT_NAME": "/rl"})
    assert mounted.status_code == 302 and mounted.location.startswith("/rl/task#token=")
    plain = client.get(f"/join/{cid}?PROLIFIC_PID=p2")
    assert plain.location.startswith("/task#token=")


def test_late_repeated_foreign_and_unknown_submissions_change_nothing(app, owner):
    campaign = owner.campaign(annotators_per_round=3, start=True)
    cid = campaign["id"]
    render_round(app, cid, 0)
    first, second = owner.annotators(cid, 2)
    client = app.test_client()
    task = client.get("/api/tasks/next", headers=bearer(first)).json
    ids = [i["id"] for i in task["images"]]
    url = f"/api/tasks/{task['task_id']}/ranking"
    assert client.post(url, json={"order": ids}, headers=bearer("nobody")).status_code == 401
    assert client.post(url, json={"order": ids}, headers=bearer(second)).status_code == 403
    assert client.post(url, json={"order": ids[:1]}, headers=bearer(first)).status_code == 400
    unknown = client.post("/api/tasks/nope/ranking", json={"order": ids}, headers=bearer(first))
    assert unknown.status_code == 404
    stored = client.post(url, json={"order": ids}, headers=bearer(first))
    assert stored.status_code == 201 and stored.json["late"] is False
    assert client.post(url, json={"order": ids}, headers=bearer(first)).status_code == 409
    with app.app_context(), db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Ranking)) == 1
        round_ = session.scalar(select(Round).where(Round.campaign_id == cid))
        assert round_.n_rankings == 1 and round_.status == "open"
        assert {a.tasks_done for a in session.scalars(select(Annotator))} == {0, 1}
        assert (
            session.scalar(
                select(func.count()).select_from(Assignment).where(Assignment.status == "submitted")
            )
            == 1
        )


def test_the_rate_limit_still_answers_429_per_annotator(tmp_path):
    app = make_app(tmp_path, RATELIMIT_ANNOTATOR="3 per minute")
    client = app.test_client()
    codes = [client.get("/api/tasks/next", headers=bearer("a")).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    # Another annotator (another token) has a budget of its own.
    assert client.get("/api/tasks/next", headers=bearer("b")).status_code == 401
    db.get_engine(app).dispose()
