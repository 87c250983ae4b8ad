"""The annotator's hot path over HTTP: quotas, links under a mount prefix, rate limits, and
the lean statements behind ``GET /api/tasks/next`` and ``POST /api/tasks/<id>/ranking``
(SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from service import db
from service.limits import TokenBuckets
from service.models import Annotator, Assignment, Ranking, Round
from tests.fixtures.coordinator import Owner, bearer, make_app, render_round


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
    cid = owner.campaign(start=True, recruit=True)["id"]
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
    again = client.post(url, json={"order": ids}, headers=bearer(first))  # a retry: as the first
    assert again.status_code == 201 and again.json["ranking_id"] == stored.json["ranking_id"]
    assert client.post(url, json={"order": ids[::-1]}, headers=bearer(first)).status_code == 409
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


def test_four_simultaneous_posts_of_one_ranking_store_it_once(app, owner):
    cid = owner.campaign(annotators_per_round=3, start=True)["id"]
    render_round(app, cid, 0)
    (token,) = owner.annotators(cid, 1)
    task = app.test_client().get("/api/tasks/next", headers=bearer(token)).json
    body = {"order": [i["id"] for i in task["images"]]}
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        url = f"/api/tasks/{task['task_id']}/ranking"
        codes.append(client.post(url, json=body, headers=bearer(token)).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [201] * 4  # the same ranking four times: stored once, each told so
    with app.app_context(), db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Ranking)) == 1
        assert session.scalar(select(Round.n_rankings).where(Round.campaign_id == cid)) == 1
        assert session.scalar(select(Annotator.tasks_done)) == 1


def test_parallel_fetches_share_one_lease_over_http(app, owner):
    cid = owner.campaign(annotators_per_round=3, start=True)["id"]
    render_round(app, cid, 0)
    (token,) = owner.annotators(cid, 1)
    barrier = threading.Barrier(4)
    tasks: list[str] = []

    def fetch() -> None:
        client = app.test_client()
        barrier.wait()
        tasks.append(client.get("/api/tasks/next", headers=bearer(token)).json["task_id"])

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tasks) == 4 and len(set(tasks)) == 1


def test_the_shared_rate_limit_scope_still_answers_429(tmp_path):
    app = make_app(tmp_path, RATELIMIT_ANNOTATOR="2 per minute", RATELIMIT_ANNOTATOR_SCOPE="shared")
    client = app.test_client()
    codes = [client.get("/api/tasks/next", headers=bearer("a")).status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    db.get_engine(app).dispose()


def test_token_buckets_refill_at_the_limit_rate():
    buckets = TokenBuckets(amount=2, period_s=60.0)
    assert [buckets.take("a", now=0.0) for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a", now=0.0) == pytest.approx(30.0)  # one request per 30 s
    assert buckets.take("b", now=0.0) == 0.0  # another key, another bucket
    assert buckets.take("a", now=29.0) == pytest.approx(1.0)
    assert buckets.take("a", now=31.0) == 0.0
    with pytest.raises(ValueError, match="at least one request"):
        TokenBuckets(amount=0, period_s=60.0)


def test_the_recruitment_link_is_limited_per_address(tmp_path):
    app = make_app(tmp_path, RATELIMIT_JOIN="1 per minute")
    owner = Owner(app.test_client())
    cid = owner.campaign(start=True, recruit=True)["id"]
    client = app.test_client()
    assert client.get(f"/join/{cid}?PROLIFIC_PID=p1").status_code == 302
    refused = client.get(f"/join/{cid}?PROLIFIC_PID=p2")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json["error"]["code"] == "too_many_requests"
    db.get_engine(app).dispose()


def test_the_dashboard_takes_the_owner_key_from_the_link_fragment(tmp_path, browser):
    from werkzeug.serving import make_server

    from tests.fixtures.coordinator import ADMIN

    app = make_app(tmp_path)
    campaign = Owner(app.test_client()).campaign(name="From the link")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.server_port}/dashboard#key={ADMIN}")
        page.wait_for_selector(f"#campaigns a[href$='{campaign['id']}']")
        assert "key=" not in page.url  # out of the address bar (and its history)
        assert page.evaluate("sessionStorage.getItem('rankloop.ownerKey')") == ADMIN
        assert page.is_hidden("#login")
    finally:
        context.close()
        server.shutdown()
        db.get_engine(app).dispose()
