"""One reliability number per annotator: the annotator list and an annotator's own view read
the same source (the campaign's pooled evidence), whatever each round's consensus used."""

from __future__ import annotations

import pytest

from tests.fixtures.coordinator import bearer, render_round


def test_the_list_and_the_annotators_own_view_show_the_same_weight(app, owner):
    cid = owner.campaign(annotators_per_round=3, rounds=3, tasks_per_annotator=3)["id"]
    owner.post(f"/api/campaigns/{cid}/start")
    tokens = owner.annotators(cid, 3)
    client = owner.client
    for number in range(2):
        render_round(app, cid, number)
        for n, token in enumerate(tokens):
            task = client.get("/api/tasks/next", headers=bearer(token)).json
            order = [i["id"] for i in task["images"]]
            if n == 2:
                order.reverse()  # a contrarian
            sent = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                               headers=bearer(token))  # fmt: skip
            assert sent.status_code == 201
    listed = owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
    assert len(listed) == 3 and all(row["weight"] is not None for row in listed)
    differs = False
    for row in listed:
        detail = owner.get(f"/api/campaigns/{cid}/annotators/{row['id']}").json
        assert detail["weight"] == pytest.approx(row["weight"])
        last_round = detail["rankings"][-1]["weight"]
        differs |= last_round != pytest.approx(row["weight"])
    # The per-round weight is another figure (what that round's consensus used): the view
    # shows it as such, never as the annotator's reliability.
    assert differs
