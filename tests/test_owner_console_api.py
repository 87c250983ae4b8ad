"""The owner console's endpoints: one round in detail, and an annotator revoked (their later
requests refused, what they gave kept and marked, and with ``exclude`` left out of every later
consensus)."""

from __future__ import annotations

from flask import Flask

from service import db
from service.auth import hash_token, new_token
from service.models import OwnerKey
from tests.fixtures.coordinator import Owner, bearer, render_round


def _annotators(owner: Owner, campaign_id: str, count: int) -> list[tuple[str, str]]:
    """(annotator id, token) of ``count`` new annotators of the campaign."""
    response = owner.post(f"/api/campaigns/{campaign_id}/annotators", json={"count": count})
    assert response.status_code == 201
    return [(a["id"], a["token"]) for a in response.json["annotators"]]


def _rank(owner: Owner, token: str, best_first: bool = True) -> list[str]:
    """Rank the task's images as shown (or reversed); the order sent."""
    response = owner.client.get("/api/tasks/next", headers=bearer(token))
    assert response.status_code == 200, response.status_code
    task = response.get_json()
    order = [image["id"] for image in task["images"]]
    order = order if best_first else order[::-1]
    sent = owner.client.post(
        f"/api/tasks/{task['task_id']}/ranking", json={"order": order}, headers=bearer(token)
    )
    assert sent.status_code == 201, sent.json
    return order


def test_a_round_in_detail_shows_every_ranking_and_the_consensus(app: Flask, owner: Owner):
    campaign = owner.campaign(start=True, rounds=2)
    cid = campaign["id"]
    render_round(app, cid, 0)
    (first, a), (second, b) = _annotators(owner, cid, 2)
    sent = [_rank(owner, a), _rank(owner, b, best_first=False)]

    detail = owner.get(f"/api/campaigns/{cid}/rounds/0")
    assert detail.status_code == 200
    body = detail.json
    assert body["status"] == "closed" and body["quorum"] == 2
    assert [r["annotator_id"] for r in body["rankings"]] == [first, second]
    assert [r["order"] for r in body["rankings"]] == sent
    # The attention check's verdict is given per ranking, as the owner sees it.
    assert all(isinstance(r["attention_passed"], bool) for r in body["rankings"])
    image_ids = {image["id"] for image in body["images"]}
    assert set(body["consensus"]["order"]) == image_ids
    assert set(body["consensus"]["weights"]) == {first, second}
    assert body["stats"] == {"step": 0.5, "moved": True}  # what the render reported
    assert body["render_seconds"] == 0.01
    assert all(image["thumb_url"] for image in body["images"])

    assert owner.get(f"/api/campaigns/{cid}/rounds/7").status_code == 404
    assert owner.get(f"/api/campaigns/{cid}/rounds/one").status_code == 404


def test_whether_people_told_a_rounds_images_apart_follows_their_agreement(
    app: Flask, owner: Owner
):
    for alike, expected in ((True, True), (False, False)):
        cid = owner.campaign(start=True, rounds=2)["id"]
        render_round(app, cid, 0)
        for n, (_, token) in enumerate(_annotators(owner, cid, 2)):
            task = owner.client.get("/api/tasks/next", headers=bearer(token)).get_json()
            order = sorted(image["id"] for image in task["images"])  # the same for both ...
            if not alike and n == 1:
                order.reverse()  # ... or exactly backwards: agreement below chance
            sent = owner.client.post(
                f"/api/tasks/{task['task_id']}/ranking",
                json={"order": order},
                headers=bearer(token),
            )
            assert sent.status_code == 201, sent.json
        consensus = owner.get(f"/api/campaigns/{cid}/rounds/0").json["consensus"]
        assert consensus["distinguishable"] is expected


def test_another_owner_cannot_see_a_round(app: Flask, owner: Owner):
    cid = owner.campaign(start=True)["id"]
    render_round(app, cid, 0)
    key = new_token()
    with app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab b", key_hash=hash_token(key)))
        session.commit()
    response = app.test_client().get(f"/api/campaigns/{cid}/rounds/0", headers=bearer(key))
    assert response.status_code == 403


def test_a_revoked_annotator_is_refused_kept_marked_and_excluded(app: Flask, owner: Owner):
    cid = owner.campaign(start=True, rounds=3, tasks_per_annotator=5)["id"]
    render_round(app, cid, 0)
    (kept, a), (revoked, b), (_, c) = _annotators(owner, cid, 3)
    _rank(owner, a)
    _rank(owner, b)  # round 0 closes with both
    render_round(app, cid, 1)
    _rank(owner, b)  # round 1: the one to be revoked ranks first ...
    response = owner.post(
        f"/api/campaigns/{cid}/annotators/{revoked}/revoke", json={"exclude": True}
    )
    assert response.status_code == 200
    assert response.json["id"] == revoked and response.json["excluded"] is True

    # ... and is refused from then on, on every path that takes a token, told it was revoked
    # (a token nobody ever held is told it is unknown).
    for path in ("/api/me", "/api/tasks/next"):
        refused = owner.client.get(path, headers=bearer(b))
        assert refused.status_code == 401
        assert refused.json["error"]["code"] == "token_revoked"
        assert "revoked" in refused.json["error"]["message"]
        unknown = owner.client.get(path, headers=bearer(new_token()))
        assert (unknown.status_code, unknown.json["error"]["code"]) == (401, "unauthorized")
    for method, path, body in (
        ("post", "/api/tasks/t1/ranking", {"order": ["x", "y"]}),
        ("post", "/api/tasks/t1/ranking", {"order": "not a list"}),
        ("post", "/api/tasks/t1/shown", {"load_s": 1.5}),
        ("post", "/api/tasks/stream-ticket", None),
    ):
        refused = getattr(owner.client, method)(path, json=body, headers=bearer(b))
        assert (refused.status_code, refused.json["error"]["code"]) == (401, "token_revoked"), path
    _rank(owner, c)  # the quorum of two is met (the revoked ranking counted in it)

    one = owner.get(f"/api/campaigns/{cid}/rounds/1").json
    assert one["status"] == "closed"
    assert [r["excluded"] for r in one["rankings"]] == [True, False]
    # Their ranking of round 1 came before the revocation but went into no consensus.
    assert revoked not in one["consensus"]["weights"]
    zero = owner.get(f"/api/campaigns/{cid}/rounds/0").json
    assert set(zero["consensus"]["weights"]) == {kept, revoked}  # closed before: unchanged

    rows = {r["id"]: r for r in owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]}
    assert rows[revoked]["revoked_at"] and rows[revoked]["excluded"] is True
    assert rows[kept]["revoked_at"] is None and rows[kept]["excluded"] is False
    assert rows[revoked]["n_rankings"] == 2  # what they gave stays in the data
    exported = owner.get(f"/api/campaigns/{cid}/export?format=jsonl").get_data(as_text=True)
    assert sum(revoked in line for line in exported.splitlines()) == 2


def test_revoking_without_exclude_keeps_the_rankings_in_consensus(app: Flask, owner: Owner):
    cid = owner.campaign(start=True, rounds=2)["id"]
    render_round(app, cid, 0)
    (first, a), (second, b) = _annotators(owner, cid, 2)
    _rank(owner, a)
    revoke = f"/api/campaigns/{cid}/annotators/{first}/revoke"
    assert owner.post(revoke, json={}).json["excluded"] is False
    assert owner.client.get("/api/me", headers=bearer(a)).status_code == 401
    _rank(owner, b)
    weights = owner.get(f"/api/campaigns/{cid}/rounds/0").json["consensus"]["weights"]
    assert set(weights) == {first, second}


def test_only_the_campaigns_own_annotators_can_be_revoked(app: Flask, owner: Owner):
    cid = owner.campaign(start=True)["id"]
    other = owner.campaign(start=True)["id"]
    ((theirs, _),) = _annotators(owner, other, 1)
    response = owner.post(f"/api/campaigns/{cid}/annotators/{theirs}/revoke", json={})
    assert response.status_code == 404
    bad = owner.post(f"/api/campaigns/{other}/annotators/{theirs}/revoke", json={"exclude": 1})
    assert bad.status_code == 422


def test_one_annotator_in_detail(app: Flask, owner: Owner):
    # They rank as shown, the attention check by chance: its policy is not what is tested here.
    cid = owner.campaign(
        start=True,
        rounds=2,
        annotators_per_round=2,
        tasks_per_annotator=3,
        max_attention_failures=3,
    )["id"]
    render_round(app, cid, 0)
    (first, a), (_, b) = _annotators(owner, cid, 2)
    sent = [_rank(owner, a)]
    _rank(owner, b)  # round 0 closes
    render_round(app, cid, 1)
    sent.append(_rank(owner, a))  # round 1 stays open: no consensus yet

    detail = owner.get(f"/api/campaigns/{cid}/annotators/{first}").json
    assert detail["id"] == first and detail["pool"] is False
    assert detail["tasks_done"] == 2 and detail["tasks_quota"] == 3
    assert [r["round"] for r in detail["rankings"]] == [0, 1]
    assert [r["order"] for r in detail["rankings"]] == sent
    assert all(r["seconds"] >= 0 for r in detail["rankings"])
    weights = owner.get(f"/api/campaigns/{cid}/rounds/0").json["consensus"]["weights"]
    assert [r["weight"] for r in detail["rankings"]] == [weights[first], None]
    assert detail["completion_code"] is None and detail["revoked_at"] is None

    _rank(owner, b)  # round 1 closes: the budget of two rounds is spent, the campaign ends
    assert owner.client.get("/api/me", headers=bearer(a)).get_json()["completion_code"]
    issued = owner.get(f"/api/campaigns/{cid}/annotators/{first}").json["completion_code"]
    assert issued == owner.get(f"/api/campaigns/{cid}").json["completion_code"]

    other = owner.campaign()["id"]
    assert owner.get(f"/api/campaigns/{other}/annotators/{first}").status_code == 404
    assert owner.get(f"/api/campaigns/{cid}/annotators/nobody").status_code == 404


def test_a_round_says_how_many_rankings_it_took_and_why_it_closed(app: Flask, owner: Owner):
    campaign = owner.campaign(
        start=True,
        rounds=2,
        quorum="adaptive",
        min_annotators_per_round=2,
        annotators_per_round=4,
    )
    cid = campaign["id"]
    render_round(app, cid, 0)
    tokens = [token for _, token in _annotators(owner, cid, 2)]
    _rank(owner, tokens[0])
    detail = owner.get(f"/api/campaigns/{cid}/rounds/0").json
    assert (detail["quorum"], detail["quorum_cap"], detail["close_reason"]) == (2, 4, None)
    # The same order again (the page shuffles per annotator: ranked by image index instead).
    response = owner.client.get("/api/tasks/next", headers=bearer(tokens[1]))
    images = response.get_json()["images"]
    order = [i["id"] for i in sorted(images, key=lambda i: detail_position(detail, i["id"]))]
    sent = owner.client.post(
        f"/api/tasks/{response.get_json()['task_id']}/ranking",
        json={"order": order},
        headers=bearer(tokens[1]),
    )
    assert sent.status_code == 201
    body = owner.get(f"/api/campaigns/{cid}/rounds/0").json
    assert body["status"] == "closed" and len(body["rankings"]) == 2
    assert body["close_reason"] == "settled"
    history = owner.get(f"/api/campaigns/{cid}").json["history"]
    assert (history[0]["n_rankings"], history[0]["close_reason"]) == (2, "settled")


def detail_position(detail: dict, image_id: str) -> int:
    """Where the first annotator put ``image_id`` (their order, as the round detail shows it)."""
    return detail["rankings"][0]["order"].index(image_id)
