"""The cost estimate's inputs: annotator seconds per ranking (the stated default for the task's
shape until this deployment has measured its own) and the pay per hour."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select, update

from rankloop.core.contracts import default_lease_s, typical_ranking_s
from service import db
from service.models import Assignment, Ranking, Round
from tests.fixtures.coordinator import bearer, render_round


def test_the_default_is_stated_and_the_lease_is_its_slack_multiple():
    assert typical_ranking_s(4, None, 256, 256, True) == pytest.approx(45 + 5 * 8 * 0.5 + 5 * 3)
    assert default_lease_s(4, None, 256, 256, True) == 160.0  # 2 × 80 s, to the next 10 s


def test_the_estimate_uses_the_default_until_rankings_are_measured(sqlite_app):
    client = sqlite_app.test_client()
    admin = bearer("test-admin-token")
    before = client.get("/api/estimate?m=4&width=256&height=256", headers=admin).json
    assert before == {
        "seconds_per_ranking": typical_ranking_s(4, None, 256, 256, True),
        "default_seconds_per_ranking": typical_ranking_s(4, None, 256, 256, True),
        "measured": False, "n_measured": 0, "pay_per_hour": 12.0,
    }  # fmt: skip
    assert client.get("/api/estimate?m=99", headers=admin).status_code == 400
    assert client.get("/api/estimate").status_code == 401

    body = {"prompt": "p", "m": 4, "annotators_per_round": 6, "rounds": 1, "start": True}
    cid = client.post("/api/campaigns", json=body, headers=admin).json["id"]
    tokens = [a["token"] for a in client.post(f"/api/campaigns/{cid}/annotators",
                                               json={"count": 6}, headers=admin).json["annotators"]]  # fmt: skip
    render_round(sqlite_app, cid, 0)
    for token in tokens:
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        order = [i["id"] for i in task["images"]]
        sent = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                           headers=bearer(token))  # fmt: skip
        assert sent.status_code == 201
    # Each task took 40 s from its lease to its ranking: half the default for its shape (80 s).
    with sqlite_app.app_context(), db.session_scope() as session:
        for ranking in session.query(Ranking).all():
            session.execute(
                update(Assignment)
                .where(Assignment.id == ranking.assignment_id)
                .values(created_at=ranking.created_at - dt.timedelta(seconds=40))
            )
        session.commit()
    after = client.get("/api/estimate?m=8&k=3&width=512&height=512", headers=admin).json
    default = typical_ranking_s(8, 3, 512, 512, True)
    assert after["measured"] and after["n_measured"] == 6
    assert after["default_seconds_per_ranking"] == pytest.approx(default)
    assert after["seconds_per_ranking"] == pytest.approx(default * 40 / 80)


def _simulated_run(app, shape: dict, quorum: int, seconds) -> list[float]:
    """A one-round campaign of ``shape`` ranked by ``quorum`` simulated annotators, each task
    taking ``seconds(typical)`` from its lease to its ranking (recorded as the lease's time):
    the seconds each ranking took."""
    client, admin = app.test_client(), bearer("test-admin-token")
    body = {"prompt": "p", "annotators_per_round": quorum, "rounds": 1, "start": True, **shape}
    cid = client.post("/api/campaigns", json=body, headers=admin).json["id"]
    made = client.post(f"/api/campaigns/{cid}/annotators", json={"count": quorum}, headers=admin)
    render_round(app, cid, 0, m=shape["m"])
    for token in (a["token"] for a in made.json["annotators"]):
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        order = [i["id"] for i in task["images"]]
        sent = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                           headers=bearer(token))  # fmt: skip
        assert sent.status_code == 201
    typical = typical_ranking_s(shape["m"], shape.get("k"), shape.get("width", 256),
                                shape.get("height", 256), True)  # fmt: skip
    took = []
    with app.app_context(), db.session_scope() as session:
        rankings = session.scalars(
            select(Ranking)
            .join(Round, Round.id == Ranking.round_id)
            .where(Round.campaign_id == cid)
        ).all()
        for ranking in rankings:
            took.append(seconds(typical))
            session.execute(
                update(Assignment)
                .where(Assignment.id == ranking.assignment_id)
                .values(created_at=ranking.created_at - dt.timedelta(seconds=took[-1]))
            )
        session.commit()
    return took


def test_the_estimate_is_within_a_factor_of_1_5_of_a_simulated_runs_time(sqlite_app):
    # A simulated crowd that works at 0.6 x the stated default for each task's shape, each task
    # spread log-normally (sigma 0.5: a quarter of tasks off by more than 40 %).
    rng = np.random.default_rng(0)

    def seconds(typical: float) -> float:
        return float(0.6 * typical * rng.lognormal(0.0, 0.5))

    _simulated_run(sqlite_app, {"m": 4}, 12, seconds)
    shape = {"m": 8, "k": 3, "width": 512, "height": 512}
    query = "&".join(f"{k}={v}" for k, v in shape.items())
    estimate = (
        sqlite_app.test_client()
        .get(f"/api/estimate?{query}", headers=bearer("test-admin-token"))
        .json
    )
    assert estimate["measured"] and estimate["n_measured"] == 12
    took = _simulated_run(sqlite_app, shape, 12, seconds)
    predicted = len(took) * estimate["seconds_per_ranking"]  # the form's "annotator time in all"
    assert 1 / 1.5 <= predicted / sum(took) <= 1.5
