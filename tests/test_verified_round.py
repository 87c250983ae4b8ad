"""The verified round schedule (rankloop/core/optimizer/verified.py): its estimator, its move
rule, its state, the pixel-space bounds, and old campaign states that still load and continue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankloop.core.errors import InvalidInput
from rankloop.core.optimizer import (
    STATE_VERSION,
    VERIFIED,
    RankSGD,
    dumps_state,
    loads_state,
)
from rankloop.core.optimizer import path as paths
from rankloop.core.optimizer import verified as v
from rankloop.core.round_step import pixel_effect

DATA = Path(__file__).parent / "data"


def sphere(x):
    return np.sum(np.asarray(x) ** 2, axis=-1)


def ranking(objective, points, k=None):
    order = np.argsort(objective(points.reshape(len(points), -1)), kind="stable").tolist()
    return order if k is None else order[:k]


def unshuffle(opt: RankSGD, proposal) -> np.ndarray:
    """The proposal's points in the layout's order: centre, trials, perturbations."""
    inverse = np.argsort(opt._display())
    return proposal.points.reshape(len(proposal.points), -1)[inverse]


# ---------------------------------------------------------------------------- the estimator
@settings(max_examples=60, deadline=None)
@given(
    st.integers(3, 12).flatmap(
        lambda m: st.tuples(
            st.just(m),
            st.booleans(),
            st.permutations(list(range(m))),
            st.integers(1, m),
        )
    )
)
def test_estimator_weights_sum_to_zero(case):
    m, has_direction, order, k = case
    lay = v.layout(m, 1, has_direction)
    weights = v.estimator_weights_from_order(order[:k], lay)
    if weights is not None:
        assert len(weights) == len(lay.estimator_items)
        assert weights.sum() == pytest.approx(0.0, abs=1e-12)
        assert np.any(weights != 0)
    w = np.zeros((m, m))
    for i, a in enumerate(order[:k]):
        w[a, order[i + 1 :]] = 1.0
    from_w = v.estimator_weights_from_preferences(w, lay)
    if from_w is not None:
        assert from_w.sum() == pytest.approx(0.0, abs=1e-12)


def test_estimator_is_unbiased_in_direction_on_a_quadratic():
    # Averaged over many rounds at a fixed point, the descent estimate read from the centre and
    # the perturbations points along -grad f, whatever the trials (here along random lines)
    # and with top-3 answers that often rank trials first.
    d, mu = 20, 1e-3
    h = np.linspace(1.0, 3.0, d)
    x = np.linspace(-1.0, 1.0, d) + 0.3

    def f(points):
        return np.sum(h * np.asarray(points) ** 2, axis=-1)

    lay = v.layout(8, 1, has_direction=True)
    total, used = np.zeros(d), 0
    for seed in range(600):
        rng = np.random.default_rng(seed)
        u = rng.standard_normal(d)
        u /= np.linalg.norm(u)
        xi = rng.standard_normal((lay.perturbations, d))
        trials = x + v.trial_steps(0.05, lay.trials)[:, None] * u
        points = np.vstack([x, trials, x + mu * xi])
        weights = v.estimator_weights_from_order(ranking(f, points, 3), lay)
        if weights is not None:
            total += weights[1:] @ xi  # the centre's perturbation is 0
            used += 1
    gradient = 2 * h * x
    cosine = -total @ gradient / (np.linalg.norm(total) * np.linalg.norm(gradient))
    assert used > 300
    assert cosine > 0.95


def test_anchored_estimator_is_unbiased_at_the_anchor_on_a_quadratic():
    # Anchored layout: the perturbations lie around the shorter trial x + eta u; averaged over
    # many rounds, the estimate read from the anchor and the perturbations points along
    # -grad f at the anchor (where x moves), not at x, with top-3 answers.
    d, mu, eta = 20, 1e-3, 0.4
    h = np.linspace(1.0, 3.0, d)
    x = np.linspace(-1.0, 1.0, d) + 0.3

    def f(points):
        return np.sum(h * np.asarray(points) ** 2, axis=-1)

    lay = v.layout(8, 1, has_direction=True, anchored=True)
    assert lay.base == lay.trial(lay.trials - 1) and lay.estimator_items[0] == lay.base
    total, used = np.zeros(d), 0
    anchor_gradient = np.zeros(d)
    for seed in range(600):
        rng = np.random.default_rng(seed)
        u = -2 * h * x + 3.0 * rng.standard_normal(d)  # a noisy descent direction
        u /= np.linalg.norm(u)
        xi = rng.standard_normal((lay.perturbations, d))
        trials = x + v.trial_steps(eta, lay.trials)[:, None] * u
        points = np.vstack([x, trials, trials[-1] + mu * xi])
        weights = v.estimator_weights_from_order(ranking(f, points, 3), lay)
        if weights is not None:
            total += (weights[1:] @ xi) / np.linalg.norm(2 * h * trials[-1])
            anchor_gradient += 2 * h * trials[-1] / np.linalg.norm(2 * h * trials[-1])
            used += 1
    cosine = -total @ anchor_gradient / (np.linalg.norm(total) * np.linalg.norm(anchor_gradient))
    at_x = -total @ (2 * h * x) / (np.linalg.norm(total) * np.linalg.norm(2 * h * x))
    assert used > 500
    assert cosine > 0.95
    assert cosine > at_x  # the estimate is read where x moves to


def test_anchored_top_k_answers_rank_more_of_the_estimators_points_than_centred_ones():
    # With steps that work, a top-3 answer ranks the trials first: the centred estimator then
    # hears about fewer of its points (measured: about 1.8 of 3 against 2.7 anchored).
    x0 = np.full(30, 1.0)
    heard = {}
    for name in v.LAYOUTS:
        opt = RankSGD.from_state_dict(
            {**RankSGD(x0, m=8, k=3, seed=2).state_dict(), "layout": name}
        )
        counts = []
        for _ in range(30):
            order = ranking(sphere, opt.ask().points, 3)
            lay = opt._layout()
            display = opt._display()
            counts.append(sum(int(display[i]) in lay.estimator_items for i in order))
            opt.tell(order)
        heard[name] = np.mean(counts[1:])
    assert heard[v.ANCHORED] > heard[v.CENTRED] + 0.5


def test_perturbations_are_move_candidates_only_while_within_a_step_of_the_anchor():
    narrow = v.layout(8, 1, True, anchored=True, perturbation_moves=True)
    assert narrow.move_items == list(range(8))
    wide = v.layout(8, 1, True, anchored=True, perturbation_moves=False)
    assert wide.move_items == [0, 1, 2]
    assert v.layout(8, 1, True, anchored=False, perturbation_moves=True).move_items == [0, 1, 2]
    first = v.layout(8, 0, False, anchored=True, perturbation_moves=True)
    assert first.base == first.centre and first.move_items == [0]
    # A learnt metric's warm-up widens the perturbations beyond the step: no perturbation moves.
    opt = RankSGD(np.ones(4), m=8, seed=1, radius_ratio=3.0)
    opt.tell(ranking(sphere, opt.ask().points))
    assert opt._layout().anchored and not opt._layout().perturbation_moves


def test_the_path_of_moves_keeps_unit_length_for_random_moves_and_grows_for_steady_ones():
    rng = np.random.default_rng(0)
    d = 50
    lengths = []
    for _ in range(200):
        path = np.zeros(d)
        for _ in range(300):
            path = paths.update_path(path, rng.standard_normal(d) * rng.uniform(0.1, 10.0))
        lengths.append(path @ path)
    assert np.mean(lengths) == pytest.approx(1.0, rel=0.1)
    steady = np.zeros(d)
    for _ in range(1000):
        steady = paths.update_path(steady, np.eye(d)[0] * rng.uniform(0.1, 10.0))
    c = paths.PATH_DECAY
    assert np.linalg.norm(steady) == pytest.approx(np.sqrt((1 + c) / (1 - c)), rel=1e-6)


def test_perturbations_stretch_along_the_path_and_nowhere_else():
    rng = np.random.default_rng(1)
    xi = rng.standard_normal((5, 8))
    np.testing.assert_array_equal(paths.stretch_along_path(xi, np.full(8, 0.3)), xi)  # |p| < 1
    path = np.zeros(8)
    path[2] = 4.0
    stretched = paths.stretch_along_path(xi, path)
    np.testing.assert_allclose(stretched[:, 2], 4.0 * xi[:, 2])
    np.testing.assert_array_equal(np.delete(stretched, 2, axis=1), np.delete(xi, 2, axis=1))
    path[2] = 1e3
    assert np.allclose(paths.stretch_along_path(xi, path)[:, 2], paths.MAX_PATH_STRETCH * xi[:, 2])


def test_stretched_estimator_is_unbiased_for_the_stretched_metric_on_a_quadratic():
    # Perturbations A z with A = I + (a - 1) v v^T: the averaged estimate points along
    # -A^2 grad f (the gradient preconditioned by the rank-one metric), with top-3 answers.
    d, mu = 20, 1e-3
    h = np.linspace(1.0, 3.0, d)
    x = np.linspace(-1.0, 1.0, d) + 0.3
    path = np.zeros(d)
    path[-1] = 3.0

    def f(points):
        return np.sum(h * np.asarray(points) ** 2, axis=-1)

    lay = v.layout(8, 0, has_direction=False)
    total = np.zeros(d)
    for seed in range(800):
        xi = paths.stretch_along_path(np.random.default_rng(seed).standard_normal((7, d)), path)
        weights = v.estimator_weights_from_order(ranking(f, np.vstack([x, x + mu * xi]), 3), lay)
        total += weights[1:] @ xi
    gradient = 2 * h * x
    preconditioned = gradient.copy()
    preconditioned[-1] *= 9.0
    cosine = -total @ preconditioned / (np.linalg.norm(total) * np.linalg.norm(preconditioned))
    plain = -total @ gradient / (np.linalg.norm(total) * np.linalg.norm(gradient))
    assert cosine > 0.95
    assert cosine > plain + 0.05


def test_the_path_learns_a_steady_direction_of_progress():
    # A long valley along a rotated axis: the moves keep a direction, the path grows along it.
    d = 12
    rng = np.random.default_rng(3)
    axis = rng.standard_normal(d)
    axis /= np.linalg.norm(axis)

    def valley(points):
        points = np.asarray(points)
        along = points @ axis
        return np.sum(points**2, axis=-1) * 100.0 - 99.0 * along**2 + 5.0 * along

    opt = RankSGD(np.zeros(d), m=8, k=3, seed=4, step=0.1)
    for _ in range(150):
        opt.tell(ranking(valley, opt.ask().points, 3))
    path = opt.state_dict()["path"]
    assert np.linalg.norm(path) > 2.0
    assert abs(path @ axis) / np.linalg.norm(path) > 0.9


def test_a_verified_round_is_invariant_under_a_monotone_transform_of_f():
    x0 = np.linspace(-1.0, 1.0, 8)
    plain = RankSGD(x0, m=8, k=3, seed=4)
    warped = RankSGD(x0, m=8, k=3, seed=4)
    for _ in range(25):
        p, q = plain.ask(), warped.ask()
        plain.tell(ranking(sphere, p.points, k=3))
        warped.tell(ranking(lambda z: np.log1p(sphere(z)) ** 3 - 2.0, q.points, k=3))
    np.testing.assert_array_equal(plain.x, warped.x)
    assert plain.stats["step"] == warped.stats["step"]


# ---------------------------------------------------------------------------- the move rule
def test_every_round_is_verified_and_round_0_has_no_trials():
    opt = RankSGD(np.ones(6), m=8, seed=0)
    assert opt.next_kind == VERIFIED
    first = unshuffle(opt, opt.ask())
    np.testing.assert_array_equal(first[0], opt.x)  # the centre is the current point
    opt.tell(ranking(sphere, opt.ask().points))
    assert opt.stats["moved"] == 0.0  # no trial to move to in round 0
    lay = opt._layout()
    assert (lay.trials, lay.perturbations) == (2, 5)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 8), st.booleans())
def test_the_delivered_point_changes_only_to_a_point_ranked_above_it(seed, k, by_matrix):
    # Whatever the answer (here: random), x moves only to a shown point that the answer
    # placed above the current x.
    rng = np.random.default_rng(seed)
    opt = RankSGD(rng.standard_normal(5), m=8, seed=seed % 97)
    for _ in range(6):
        before = opt.x
        proposal = opt.ask()
        order = [int(i) for i in rng.permutation(8)[:k]]
        if by_matrix:
            w = np.zeros((8, 8))
            for i, a in enumerate(order):
                w[a, order[i + 1 :]] = 1.0
                w[a, [j for j in range(8) if j not in order]] = 1.0
            opt.tell(preferences=w)
        else:
            opt.tell(order)
        after = opt.x
        if np.array_equal(after, before):
            continue
        shown = [i for i in range(8) if np.array_equal(proposal.points[i], after)]
        centre = [i for i in range(8) if np.array_equal(proposal.points[i], before)]
        assert shown and centre
        new, old = shown[0], centre[0]
        assert new in order
        assert old not in order or order.index(new) < order.index(old)


def test_staying_wins_shrinks_the_step_and_the_longest_trial_grows_it():
    opt = RankSGD(np.full(4, 2.0), m=8, seed=3)
    opt.tell(ranking(sphere, opt.ask().points))
    step = opt.stats["step"]
    proposal = opt.ask()
    centre = [i for i, p in enumerate(proposal.points) if np.array_equal(p, opt.x)]
    opt.tell(centre)
    assert opt.stats["step"] == pytest.approx(step * v.SHRINK)
    assert opt.stats["picked"] == "best" and opt.stats["moved"] == 0.0

    step, x = opt.stats["step"], opt.x
    proposal = opt.ask()
    distances = np.linalg.norm(proposal.points - x, axis=1)
    longest = int(np.argmax(distances))
    opt.tell([longest])
    assert opt.stats["picked"] == "step0"
    assert opt.stats["moved"] == pytest.approx(2 * step)
    assert opt.stats["step"] == pytest.approx(2 * step)


def test_a_narrow_majority_of_the_evidence_does_not_move_the_image():
    opt = RankSGD(np.full(4, 2.0), m=8, seed=3)
    opt.tell(ranking(sphere, opt.ask().points))  # round 0: a direction, no move
    assert opt.stats["step"] == opt.state_dict()["step"]
    opt.ask()
    x = opt.x
    display = list(opt._display())  # shown position -> layout index (0: centre, 1: trial)
    trial, centre = display.index(1), display.index(0)
    w = np.zeros((8, 8))
    w[trial, centre], w[centre, trial] = 1.2, 1.0  # 55% for the trial: not a clear majority
    twin = RankSGD.from_state_dict(opt.state_dict())
    opt.tell(preferences=w)
    np.testing.assert_array_equal(opt.x, x)
    w[centre, trial] = 0.5  # 70%: a clear majority
    twin.tell(preferences=w)
    assert not np.array_equal(twin.x, x)


def test_defaults_decrease_the_objective_with_full_and_top_k_rankings():
    for k in (None, 3):
        x0 = np.linspace(-2.0, 2.0, 10)
        opt = RankSGD(x0, m=8, seed=0)
        for _ in range(60):
            opt.tell(ranking(sphere, opt.ask().points, k))
        assert sphere(opt.x) < 0.05 * sphere(x0)


def test_small_rounds_still_work():
    for m in (2, 3, 4):
        opt = RankSGD(np.linspace(-1.0, 1.0, 4), m=m, seed=1)
        for _ in range(40):
            opt.tell(ranking(sphere, opt.ask().points, 1))
        assert sphere(opt.x) < sphere(np.linspace(-1.0, 1.0, 4))


# ---------------------------------------------------------------------------- state
def test_state_round_trip_mid_run_with_a_pending_ask_is_exact():
    opt = RankSGD(np.linspace(-1.0, 1.0, 6), m=8, k=3, seed=7)
    for _ in range(5):
        opt.tell(ranking(sphere, opt.ask().points, 3))
    opt.note_pixel_effect(0.2)
    pending = opt.ask()
    restored = RankSGD.from_state_dict(loads_state(dumps_state(opt.state_dict())))
    np.testing.assert_array_equal(restored.ask().points, pending.points)
    for _ in range(6):
        a, b = opt.ask(), restored.ask()
        np.testing.assert_array_equal(a.points, b.points)
        opt.tell(ranking(sphere, a.points, 3))
        restored.tell(ranking(sphere, b.points, 3))
    np.testing.assert_array_equal(opt.x, restored.x)


@pytest.mark.parametrize("name", ["campaign", "library"])
def test_a_version_2_state_loads_and_continues_as_version_2_code_did(name):
    golden = json.loads((DATA / "optimizer_state_v2_continuation.json").read_text())
    state = loads_state((DATA / f"optimizer_state_v2_{name}.npz").read_bytes())
    assert state["version"] == 2
    opt = RankSGD.from_state_dict(state)
    assert opt.state_dict()["version"] == STATE_VERSION
    assert opt.next_kind != VERIFIED  # the schedule it was running
    for expected in golden["x_after_each_round"][name]:
        proposal = opt.ask()
        opt.tell(ranking(lambda x: sphere(np.asarray(x) - 0.5), proposal.points, k=3))
        np.testing.assert_allclose(opt.x, expected, rtol=0, atol=golden["tolerance"])


@pytest.mark.parametrize("name", ["campaign", "library"])
def test_a_version_3_state_loads_and_continues_as_version_3_code_did(name):
    # Saved by the version 3 code (verified rounds centred on the current point), the campaign
    # one with a pending ask and a noted pixel effect; the golden points are what that code
    # went on to do.
    golden = json.loads((DATA / "optimizer_state_v3_continuation.json").read_text())
    state = loads_state((DATA / f"optimizer_state_v3_{name}.npz").read_bytes())
    assert state["version"] == 3
    opt = RankSGD.from_state_dict(state)
    assert opt.state_dict()["version"] == STATE_VERSION
    assert opt.state_dict()["layout"] == v.CENTRED
    k = state["k"]
    for expected in golden["x_after_each_round"][name]:
        proposal = opt.ask()
        opt.tell(ranking(lambda x: sphere(np.asarray(x) - 0.5), proposal.points, k=k))
        np.testing.assert_allclose(opt.x.reshape(-1), expected, rtol=0, atol=golden["tolerance"])


def test_an_unknown_schedule_is_invalid_input():
    with pytest.raises(InvalidInput, match="schedule"):
        RankSGD(np.ones(3), schedule="three_phase")
    assert RankSGD(np.ones(3)).state_dict()["layout"] == v.ANCHORED
    with pytest.raises(InvalidInput, match="layout"):
        RankSGD.from_state_dict({**RankSGD(np.ones(3)).state_dict(), "layout": "sideways"})


# ---------------------------------------------------------------------------- pixel effect
def test_pixel_effect_is_the_median_pixel_change_per_latent_distance():
    centre = np.zeros(3)
    base = np.zeros((2, 2, 3), dtype=np.uint8)
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 4.0]])
    images = [base, np.full_like(base, 51), np.full_like(base, 51), np.full_like(base, 255)]
    # Ratios 0.2 / 1, 0.2 / 2, 1.0 / 4 -> median 0.2 (the centre itself is skipped).
    assert pixel_effect(points, images, centre, base) == pytest.approx(0.2)
    assert pixel_effect(points[:1], images[:1], centre, base) is None


def test_a_noted_pixel_effect_keeps_perturbations_visible_from_the_next_round_on():
    opt = RankSGD(np.full(16, 0.1), m=8, seed=0, step=1e-3)
    proposal = opt.ask()
    opt.note_pixel_effect(0.5)  # 0.5 of full range per unit latent distance
    np.testing.assert_array_equal(opt.ask().points, proposal.points)  # the pending round stays
    opt.tell(ranking(sphere, proposal.points))
    low, high = opt.state_dict()["options"]["min_visible"], 0.5
    nxt = unshuffle(opt, opt.ask())
    lay = opt._layout()
    radii = np.linalg.norm(nxt[1 + lay.trials :] - nxt[lay.base], axis=1)
    # Perturbations of norm radius * |z| / sqrt(d): about the visible floor over the effect.
    assert np.median(radii) == pytest.approx(low / high, rel=0.5)
    assert opt.stats["step"] >= low / high
    with pytest.raises(InvalidInput):
        opt.note_pixel_effect(0.0)
