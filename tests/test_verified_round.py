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
from rankloop.core.optimizer import VERIFIED, RankSGD, dumps_state, loads_state
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
    assert opt.state_dict()["version"] == 3
    assert opt.next_kind != VERIFIED  # the schedule it was running
    for expected in golden["x_after_each_round"][name]:
        proposal = opt.ask()
        opt.tell(ranking(lambda x: sphere(np.asarray(x) - 0.5), proposal.points, k=3))
        np.testing.assert_allclose(opt.x, expected, rtol=0, atol=golden["tolerance"])


def test_an_unknown_schedule_is_invalid_input():
    with pytest.raises(InvalidInput, match="schedule"):
        RankSGD(np.ones(3), schedule="three_phase")


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
    radii = np.linalg.norm(nxt[1 + opt._layout().trials :] - opt.x, axis=1)
    # Perturbations of norm radius * |z| / sqrt(d): about the visible floor over the effect.
    assert np.median(radii) == pytest.approx(low / high, rel=0.5)
    assert opt.stats["step"] >= low / high
    with pytest.raises(InvalidInput):
        opt.note_pixel_effect(0.0)
