"""A study's workers in its campaigns' annotator lists (issue 19): listed with their rankings
there, marked as the study's (not as pool annotators), shown in detail, revocable by the owner
from the campaign page (which revokes their study link); a worker of another study is not
found through this campaign.

Every test runs on SQLite and on PostgreSQL (the ``app`` fixture of tests/fixtures/coordinator).
"""

from __future__ import annotations

from tests.fixtures.coordinator import bearer
from tests.test_studies import join, rank, running_study


def test_a_study_worker_is_in_the_annotator_list_of_each_campaign_they_ranked_in(app, owner):
    study = running_study(app, owner, prompts=["a red apple", "a green pear"])
    first, second = (c["id"] for c in study["campaigns"])
    token = join(app, study["id"], "p1")
    task = rank(app, token)
    assert task is not None
    ranked_in = task["campaign_id"]
    untouched = second if ranked_in == first else first

    assert owner.get(f"/api/campaigns/{ranked_in}").json["study_id"] == study["id"]
    (row,) = owner.get(f"/api/campaigns/{ranked_in}/annotators").json["annotators"]
    assert row["participant_id"] == "p1" and row["n_rankings"] == 1
    assert row["study_id"] == study["id"] and row["pool"] is False
    assert owner.get(f"/api/campaigns/{untouched}/annotators").json["annotators"] == []

    detail = owner.get(f"/api/campaigns/{ranked_in}/annotators/{row['id']}").json
    assert detail["study_id"] == study["id"] and detail["pool"] is False
    assert [r["round"] for r in detail["rankings"]] == [0]

    # Revoked from the campaign page: their study link stops working.
    revoked = owner.post(f"/api/campaigns/{ranked_in}/annotators/{row['id']}/revoke", json={})
    assert revoked.status_code == 200, revoked.json
    refused = app.test_client().get("/api/tasks/next", headers=bearer(token))
    assert refused.status_code == 401 and refused.json["error"]["code"] == "token_revoked"


def test_another_studys_worker_is_not_found_through_this_campaign(app, owner):
    mine = running_study(app, owner, prompts=["a red apple"])
    theirs = running_study(app, owner, prompts=["a green pear"], name="other")
    token = join(app, theirs["id"], "p2")
    assert rank(app, token) is not None
    (row,) = owner.get(f"/api/campaigns/{theirs['campaigns'][0]['id']}/annotators").json[
        "annotators"
    ]
    cid = mine["campaigns"][0]["id"]
    assert owner.get(f"/api/campaigns/{cid}/annotators/{row['id']}").status_code == 404
    refused = owner.post(f"/api/campaigns/{cid}/annotators/{row['id']}/revoke", json={})
    assert refused.status_code == 404
