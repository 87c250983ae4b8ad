"""The improvement curve: each round's best image's strength chained through the rankings
already given (rankloop.core.improvement)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rankloop.core.improvement import RoundSteps, improvement_curve


def _round(number, rng, better: bool, m=5, annotators=4, moved=True):
    """A round whose candidate 1 (the point the next round starts from) beats the centre (0)
    for most annotators when ``better``, loses when not; the others in between."""
    rankings = []
    for j in range(annotators):
        rest = list(rng.permutation(range(2, m)))
        top, second = (1, 0) if better else (0, 1)
        if j == annotators - 1:  # one annotator disagrees
            top, second = second, top
        rankings.append((f"a{j}", [top, *rest[:1], second, *rest[1:]]))
    return RoundSteps(number, rankings, m, frozenset(), 0, 1 if moved else 0)


def test_steps_the_crowd_prefers_add_up_with_an_interval():
    rng = np.random.default_rng(0)
    rounds = [_round(t, rng, better=True) for t in range(4)]
    curve = improvement_curve(rounds, draws=60, seed=1)
    assert [p.round for p in curve] == [0, 1, 2, 3, 4]
    strengths = [p.strength for p in curve]
    assert strengths[0] == 0.0 and all(b > a for a, b in itertools.pairwise(strengths))
    for point in curve[1:]:
        assert point.low <= point.strength <= point.high
    assert curve[-1].low > 0  # four preferred steps: the interval excludes no improvement


def test_a_round_that_did_not_move_adds_nothing_and_a_worse_move_subtracts():
    rng = np.random.default_rng(2)
    still = _round(0, rng, better=True, moved=False)
    worse = _round(1, rng, better=False)
    curve = improvement_curve([still, worse], draws=40)
    assert curve[1].strength == 0.0 and (curve[1].low, curve[1].high) == (0.0, 0.0)
    assert curve[2].strength < 0


def test_no_rounds_no_curve():
    assert improvement_curve([]) == []


def test_the_curve_is_reproducible_from_its_seed():
    rng = np.random.default_rng(3)
    rounds = [_round(t, rng, better=True) for t in range(2)]
    first, again = improvement_curve(rounds, 30, seed=5), improvement_curve(rounds, 30, seed=5)
    assert first == again
    assert pytest.approx(first[-1].strength) == again[-1].strength


def test_the_campaign_curve_finds_each_rounds_centre_by_its_pixels(app, owner):
    from service import db
    from service.improvement import campaign_improvement, round_steps
    from service.models import Image, Round
    from tests.fixtures.coordinator import bearer, render_round

    cid = owner.campaign(annotators_per_round=3, rounds=3, tasks_per_annotator=5)["id"]
    owner.post(f"/api/campaigns/{cid}/start")
    tokens = owner.annotators(cid, 3)
    store = app.extensions["rankloop_store"]
    client = owner.client
    for number in range(2):
        render_round(app, cid, number)
        with app.app_context(), db.session_scope() as session:
            round_ = session.query(Round).filter_by(campaign_id=cid, number=number).one()
            images = {i.index: i for i in session.query(Image).filter_by(round_id=round_.id)}
            if number == 0:  # round 0's best is candidate 2; the point then moves to 3
                store.put(round_.best_thumb_key, store.get(images[2].thumb_key), "image/webp")
                moved_to = store.get(images[3].thumb_key)
                by_index = {i.id: i.index for i in images.values()}
            else:
                store.put(round_.best_thumb_key, moved_to, "image/webp")
        for token in tokens:
            task = client.get("/api/tasks/next", headers=bearer(token)).json
            ids = [i["id"] for i in task["images"]]
            if number == 0:  # everyone ranks candidate 3 over candidate 2
                ids.sort(key=lambda i: {3: 0, 2: 1}.get(by_index[i], 2 + by_index[i]))
            client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": ids},
                        headers=bearer(token))  # fmt: skip
    with app.app_context(), db.session_scope() as session:
        (steps,) = round_steps(session, store, cid)
        assert (steps.number, steps.centre, steps.next_centre) == (0, 2, 3)
        curve = campaign_improvement(session, store, cid, draws=30)
    assert [p.round for p in curve] == [0, 1] and curve[1].strength > 0
