"""Tests of the rank-only optimizer (rankloop/core/optimizer/) and the synthetic objectives."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankloop.core.errors import CorruptedObject, InvalidInput, ProtocolError
from rankloop.core.optimizer import (
    GRADIENT,
    LINE_SEARCH,
    STATE_VERSION,
    RankSGD,
    dag_weights,
    dumps_state,
    loads_state,
    preference_weights,
    reproducible_permutation,
    standard_normals,
)
from rankloop.simulation.objectives import (
    ill_conditioned_quadratic,
    make_problem,
    make_projected_quadratic,
    rosenbrock,
)

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "optimizer_rng_golden.json"


def sphere(x: np.ndarray) -> np.ndarray:
    return np.sum(np.asarray(x) ** 2, axis=-1)


def ranking(objective, points: np.ndarray, k: int | None = None) -> list[int]:
    values = objective(points.reshape(len(points), -1))
    order = np.argsort(values, kind="stable").tolist()
    return order if k is None else order[:k]


def run(opt: RankSGD, objective, rounds: int, k: int | None = None) -> list[np.ndarray]:
    """Drive ``opt`` with a noise-free oracle; return the points it proposed."""
    proposed = []
    for _ in range(rounds):
        proposal = opt.ask()
        proposed.append(proposal.points.copy())
        opt.tell(ranking(objective, proposal.points, k))
    return proposed


def dag_descent_by_edges(order: list[int], n: int) -> np.ndarray:
    """The estimator written literally: sum over DAG edges (a -> b) of e_a - e_b, over |E|."""
    weights = np.zeros(n)
    edges = 0
    ranked = set(order)
    for position, a in enumerate(order):
        for b in [*order[position + 1 :], *(j for j in range(n) if j not in ranked)]:
            weights[a] += 1
            weights[b] -= 1
            edges += 1
    return weights / edges


def test_the_flat_public_api_is_re_exported_by_the_package():
    import rankloop.core.optimizer as package

    public_before_the_split = {
        "GRADIENT",
        "LINE_SEARCH",
        "STATE_VERSION",
        "SUPPORTED_STATE_VERSIONS",
        "Proposal",
        "RankSGD",
        "dag_weights",
        "dumps_state",
        "loads_state",
        "preference_weights",
        "reproducible_permutation",
        "standard_normals",
    }
    assert public_before_the_split <= set(package.__all__)
    assert [name for name in package.__all__ if not hasattr(package, name)] == []


# ---------------------------------------------------------------------------- the estimator
@st.composite
def top_k_orders(draw):
    n = draw(st.integers(min_value=2, max_value=12))
    permutation = draw(st.permutations(list(range(n))))
    k = draw(st.integers(min_value=1, max_value=n))
    return list(permutation[:k]), n


@given(top_k_orders())
def test_dag_weights_sum_to_zero_and_match_the_edge_sum(case):
    order, n = case
    weights = dag_weights(order, n)
    assert abs(weights.sum()) < 1e-12
    np.testing.assert_allclose(weights, dag_descent_by_edges(order, n), atol=1e-12)
    k = len(order)
    assert weights[order[0]] == pytest.approx((n - 1) / (k * (k - 1) / 2 + k * (n - k)))


@given(top_k_orders())
def test_preferences_of_one_ranking_give_the_dag_weights(case):
    order, n = case
    w = np.zeros((n, n))
    ranked = set(order)
    for position, a in enumerate(order):
        for b in [*order[position + 1 :], *(j for j in range(n) if j not in ranked)]:
            w[a, b] = 1.0
    np.testing.assert_allclose(preference_weights(w), dag_weights(order, n), atol=1e-12)


def test_mean_descent_direction_aligns_with_minus_gradient_on_a_quadratic():
    d, m = 12, 8
    scales = np.linspace(1.0, 4.0, d)

    def quadratic(x):
        return np.sum(scales * np.asarray(x) ** 2, axis=-1)

    x = np.linspace(-1.0, 1.0, d) + 0.3
    gradient = 2 * scales * x
    mean = np.zeros(d)
    for t in range(400):
        xi = standard_normals(5, t, m * d).reshape(m, d)
        order = ranking(quadratic, x + 1e-3 * xi, k=4)
        mean += dag_weights(order, m) @ xi
    cosine = mean @ -gradient / (np.linalg.norm(mean) * np.linalg.norm(gradient))
    assert cosine > 0.95


def test_a_single_estimate_is_no_better_than_chance_when_the_ranking_is_random():
    # The control for the test above: rankings that ignore f give a direction near orthogonal.
    d, m = 12, 8
    gradient = np.ones(d)
    rng = np.random.default_rng(0)
    mean = np.zeros(d)
    for t in range(400):
        xi = standard_normals(5, t, m * d).reshape(m, d)
        mean += dag_weights(rng.permutation(m).tolist(), m) @ xi
    cosine = mean @ -gradient / (np.linalg.norm(mean) * np.linalg.norm(gradient))
    assert abs(cosine) < 0.5


# ---------------------------------------------------------------------------- the generator
def test_golden_generator_numbers():
    golden = json.loads(GOLDEN.read_text())
    tolerance = golden["tolerance"]
    for case in golden["normals"]:
        values = standard_normals(case["seed"], case["round"], len(case["values"]), case["stream"])
        np.testing.assert_allclose(values, case["values"], rtol=0, atol=tolerance)
    for case in golden["permutations"]:
        values = reproducible_permutation(case["seed"], case["round"], case["n"])
        assert values.tolist() == case["values"]


def test_generator_is_the_documented_box_muller_over_pcg64_words():
    count = 7
    pairs = (count + 1) // 2
    words = np.random.PCG64(np.random.SeedSequence([3, 9, 0])).random_raw(2 * pairs).tolist()
    uniforms = [((w >> 11) + 0.5) * 2.0**-53 for w in words]
    expected = []
    for u1, u2 in zip(uniforms[:pairs], uniforms[pairs:], strict=True):
        r = math.sqrt(-2.0 * math.log(u1))
        expected += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
    np.testing.assert_allclose(standard_normals(3, 9, count), expected[:count], rtol=1e-13)


def test_generator_looks_standard_normal():
    values = standard_normals(1, 2, 200_000)
    assert abs(values.mean()) < 0.01
    assert abs(values.std() - 1.0) < 0.01
    assert abs(np.mean(values**4) - 3.0) < 0.1


def test_same_seed_same_perturbations_other_round_or_seed_different():
    x0 = np.zeros(6)
    a = RankSGD(x0, m=4, seed=11).ask().points
    b = RankSGD(x0, m=4, seed=11).ask().points
    c = RankSGD(x0, m=4, seed=12).ask().points
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(standard_normals(11, 0, 24), standard_normals(11, 1, 24))


# ---------------------------------------------------------------------------- the loop
def test_protocol_with_a_fake_oracle():
    opt = RankSGD(np.ones(5), m=6, seed=1, gradient_rounds=2, schedule="two_phase")
    kinds = []
    for expected_round in range(9):
        first = opt.ask()
        again = opt.ask()  # a redelivered task must see the same points
        assert again is first
        assert first.round == expected_round == opt.round
        kinds.append(first.kind)
        opt.tell(ranking(sphere, first.points, k=3))
    assert kinds == [GRADIENT, GRADIENT, LINE_SEARCH] * 3
    assert opt.round == 9
    assert opt.stats["round"] == 9
    assert opt.stats["kind"] == LINE_SEARCH  # the round just told
    assert opt.stats["step"] == opt.state_dict()["step"]
    # Plain scalars for dashboards: the stats survive JSON unchanged.
    assert json.loads(json.dumps(opt.stats)) == opt.stats


def test_line_search_maps_the_displayed_winner_back_through_the_shuffle():
    opt = RankSGD(
        np.full(4, 2.0), m=6, seed=3, gradient_rounds=1, sgd_moves=False, schedule="two_phase"
    )
    opt.tell(ranking(sphere, opt.ask().points))
    proposal = opt.ask()
    assert proposal.kind == LINE_SEARCH
    chosen = 2
    opt.tell([chosen])
    np.testing.assert_array_equal(opt.x, proposal.points[chosen])
    # The shuffle is reproducible: another optimizer with the same seed shows the same order.
    twin = RankSGD(
        np.full(4, 2.0), m=6, seed=3, gradient_rounds=1, sgd_moves=False, schedule="two_phase"
    )
    twin.tell(ranking(sphere, twin.ask().points))
    np.testing.assert_array_equal(twin.ask().points, proposal.points)


def test_line_search_where_staying_wins_keeps_x_and_shrinks_the_step():
    opt = RankSGD(
        np.full(4, 2.0), m=6, seed=3, gradient_rounds=1, sgd_moves=False, schedule="two_phase"
    )
    opt.tell(ranking(sphere, opt.ask().points))
    x_before, step_before = opt.x, opt.stats["step"]
    proposal = opt.ask()
    staying = [i for i, p in enumerate(proposal.points) if np.array_equal(p, x_before)]
    opt.tell(staying[-1:])
    np.testing.assert_array_equal(opt.x, x_before)
    assert opt.stats["step"] < step_before
    assert opt.stats["accepted"] == 0


def test_line_search_where_the_longest_step_wins_grows_the_step():
    opt = RankSGD(
        np.full(4, 2.0), m=6, seed=3, gradient_rounds=1, sgd_moves=False, schedule="two_phase"
    )
    opt.tell(ranking(sphere, opt.ask().points))
    x_before, step_before = opt.x, opt.stats["step"]
    proposal = opt.ask()
    distances = np.linalg.norm(proposal.points - x_before, axis=1)
    opt.tell([int(np.argmax(distances))])
    assert opt.stats["step"] > step_before
    assert opt.stats["moved"] == pytest.approx(distances.max())


def test_defaults_decrease_the_objective_with_full_and_top_k_rankings():
    for k in (None, 2):
        x0 = np.linspace(-2.0, 2.0, 10)
        opt = RankSGD(x0, m=8, seed=0)
        run(opt, sphere, 60, k)
        assert sphere(opt.x) < 0.05 * sphere(x0)


def test_defaults_make_progress_with_a_badly_scaled_start():
    # The initial step is derived from x0; the line search must fix a poor guess fast.
    x0 = np.full(10, 1e3)
    opt = RankSGD(x0, m=8, seed=0)
    run(opt, lambda x: sphere(np.asarray(x) - 999.0), 80)
    assert sphere(opt.x - 999.0) < 1e-2 * sphere(x0 - 999.0)


def test_invariance_under_a_monotone_transform_of_f():
    x0 = np.linspace(-1.0, 1.0, 8)
    plain = RankSGD(x0, m=6, k=3, seed=4)
    warped = RankSGD(x0, m=6, k=3, seed=4)
    run(plain, ill_conditioned_quadratic, 25, k=3)
    run(warped, lambda x: np.log1p(ill_conditioned_quadratic(x)) ** 3 - 2.0, 25, k=3)
    np.testing.assert_array_equal(plain.x, warped.x)
    assert plain.state_dict()["step"] == warped.state_dict()["step"]


def test_tell_with_preferences_of_one_ranking_follows_the_same_trajectory():
    x0 = np.linspace(-1.0, 1.0, 8)
    by_order = RankSGD(x0, m=6, seed=2)
    by_preferences = RankSGD(x0, m=6, seed=2)
    for _ in range(12):
        p = by_order.ask()
        order = ranking(sphere, p.points)
        by_order.tell(order)
        q = by_preferences.ask()
        np.testing.assert_array_equal(p.points, q.points)
        n = len(order)
        w = np.zeros((n, n))
        for i, a in enumerate(order):
            w[a, order[i + 1 :]] = 2.5  # any common scale
        by_preferences.tell(preferences=w)
    np.testing.assert_allclose(by_preferences.x, by_order.x, rtol=1e-12, atol=1e-12)


def test_x_keeps_the_shape_of_x0():
    x0 = np.ones((2, 3, 4))
    opt = RankSGD(x0, m=5, seed=0)
    p = opt.ask()
    assert p.points.shape == (5, 2, 3, 4)
    opt.tell(ranking(sphere, p.points))
    assert opt.x.shape == (2, 3, 4)


# ---------------------------------------------------------------------------- the shell
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), scale=st.floats(0.1, 10.0))
def test_shell_option_keeps_every_point_at_norm_sqrt_d(seed, scale):
    d = 48
    x0 = np.random.default_rng(seed).standard_normal((3, 4, 4)) * scale
    target = np.random.default_rng(seed + 1).standard_normal(d)
    opt = RankSGD(x0, m=6, k=3, seed=seed, shell=True)
    proposed = run(opt, lambda x: sphere(np.asarray(x) - target), 12, k=3)
    for points in proposed:
        norms = np.linalg.norm(points.reshape(len(points), -1), axis=1)
        np.testing.assert_allclose(norms, math.sqrt(d), rtol=1e-9)
    assert np.linalg.norm(opt.x) == pytest.approx(math.sqrt(d), rel=1e-9)


def test_shell_option_still_optimises_on_the_sphere():
    d = 32
    target = standard_normals(9, 0, d)
    target *= math.sqrt(d) / np.linalg.norm(target)
    x0 = standard_normals(9, 1, d)
    opt = RankSGD(x0, m=8, seed=0, shell=True)
    start = sphere(opt.x - target)
    run(opt, lambda x: sphere(np.asarray(x) - target), 80)
    assert sphere(opt.x - target) < 0.2 * start


# ---------------------------------------------------------------------------- state
def test_state_round_trip_mid_run_is_exact():
    x0 = np.linspace(-1.0, 1.0, 9)
    opt = RankSGD(x0, m=6, k=4, seed=8)
    run(opt, rosenbrock, 7, k=4)
    restored = RankSGD.from_state_dict(loads_state(dumps_state(opt.state_dict())))
    assert restored.stats == opt.stats
    a = run(opt, rosenbrock, 10, k=4)
    b = run(restored, rosenbrock, 10, k=4)
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(opt.x, restored.x)


def test_state_round_trip_with_a_pending_ask_gives_the_same_proposal():
    opt = RankSGD(np.ones(5), m=4, seed=1)
    run(opt, sphere, 3)
    pending = opt.ask()
    restored = RankSGD.from_state_dict(loads_state(dumps_state(opt.state_dict())))
    again = restored.ask()
    assert again.kind == pending.kind and again.round == pending.round
    np.testing.assert_array_equal(again.points, pending.points)
    restored.tell([0])  # the restored object accepts the tell for the pending ask


def test_restoring_a_state_never_writes_into_the_callers_dictionary():
    opt = RankSGD(np.ones(5), m=4, seed=1, sgd_moves=False)  # the direction sum accumulates
    run(opt, sphere, 1)
    state = opt.state_dict()
    before = {key: value.copy() for key, value in state.items() if isinstance(value, np.ndarray)}
    restored = RankSGD.from_state_dict(state)
    run(restored, sphere, 2)
    assert restored.state_dict()["direction_sum"].tolist() != before["direction_sum"].tolist()
    for key, value in before.items():
        np.testing.assert_array_equal(state[key], value)


def test_state_holds_no_perturbations():
    opt = RankSGD(np.ones(50), m=8, seed=1)
    run(opt, sphere, 5)
    arrays = [v for v in opt.state_dict().values() if isinstance(v, np.ndarray)]
    assert all(a.size == 50 for a in arrays)
    # The point, the direction, the diagonal metric, the last gradient round's winner.
    assert len(arrays) <= 4


def test_loads_state_rejects_damaged_bytes():
    data = dumps_state(RankSGD(np.ones(3), seed=0).state_dict())
    for bad in (b"", b"not an npz", data[: len(data) // 2], data[:-10] + b"0123456789"):
        with pytest.raises(CorruptedObject):
            loads_state(bad)


def test_from_state_dict_rejects_other_versions_and_junk():
    state = RankSGD(np.ones(3), seed=0).state_dict()
    with pytest.raises(InvalidInput, match="version"):
        RankSGD.from_state_dict({**state, "version": 99})
    with pytest.raises(InvalidInput):
        RankSGD.from_state_dict({"version": 1})


def test_a_version_1_state_loads_and_continues_as_version_1_code_did():
    golden = json.loads((DATA / "optimizer_state_v1_continuation.json").read_text())
    state = loads_state((DATA / "optimizer_state_v1.npz").read_bytes())
    assert state["version"] == 1
    opt = RankSGD.from_state_dict(state)
    assert opt.state_dict()["version"] == STATE_VERSION
    assert opt.state_dict()["options"]["schedule"] == "two_phase"  # as version 1 code ran
    for expected in golden["x_after_each_round"]:
        proposal = opt.ask()
        opt.tell(ranking(lambda x: sphere(np.asarray(x) - 0.5), proposal.points, k=3))
        np.testing.assert_allclose(opt.x, expected, rtol=0, atol=golden["tolerance"])
    assert opt.stats["metric_spread"] == 0.0  # version 1 had no metric; it does not start one


# ---------------------------------------------------------------------------- the metric
def axis_ellipsoid(condition: float):
    def f(x):
        x = np.asarray(x)
        d = x.shape[-1]
        return np.sum(condition ** (np.arange(d) / (d - 1)) * x * x, axis=-1)

    return f


def test_metric_learns_the_scales_of_an_axis_aligned_ellipsoid():
    # Ideal scales are diag(H)**-1/2: log-scales fall linearly with the log-curvature.
    d, condition = 10, 1e4
    f = axis_ellipsoid(condition)
    x0 = np.ones(d)
    learnt = RankSGD(x0, m=8, seed=3, adapt_metric=True)
    isotropic = RankSGD(x0, m=8, seed=3, adapt_metric=False)
    run(learnt, f, 600)
    run(isotropic, f, 600)
    log_scales = np.log(learnt.state_dict()["scales"])
    log_curvature = np.log(condition ** (np.arange(d) / (d - 1)))
    slope = np.polyfit(log_curvature, log_scales, 1)[0]
    assert -0.8 < slope < -0.2  # ideal -0.5
    assert learnt.stats["metric_spread"] > 0.5
    assert f(learnt.x) < 0.1 * f(isotropic.x)
    assert isotropic.state_dict()["scales"] is None


def test_metric_invents_no_conditioning_on_a_sphere_or_from_random_rankings():
    # The controls for the test above: a well-conditioned f, or rankings that ignore f.
    d = 10
    on_sphere = RankSGD(np.ones(d), m=8, seed=3, adapt_metric=True)
    run(on_sphere, sphere, 600)
    assert on_sphere.stats["metric_spread"] < 0.4
    at_random = RankSGD(np.ones(d), m=8, seed=3, adapt_metric=True)
    rng = np.random.default_rng(0)
    for _ in range(600):
        at_random.ask()
        at_random.tell(rng.permutation(8).tolist())
    log_scales = np.log(at_random.state_dict()["scales"])
    slope = np.polyfit(np.arange(d) / (d - 1), log_scales, 1)[0]
    assert abs(slope) < 0.2 * math.log(1e4)  # the ellipsoid above learns about 0.5 * log(1e4)


def test_metric_uses_only_the_ranked_items_of_a_top_k_ranking():
    # Unranked items are tied; which of them came first in the proposal must not matter.
    d = 6
    a = RankSGD(np.ones(d), m=8, k=2, seed=5, adapt_metric=True)
    b = RankSGD(np.ones(d), m=8, k=2, seed=5, adapt_metric=True)
    for _ in range(260):  # past the warm-up, so the metric moves
        pa, pb = a.ask(), b.ask()
        np.testing.assert_array_equal(pa.points, pb.points)
        order = ranking(sphere, pa.points, k=2)
        a.tell(order)
        b.tell(order)
    np.testing.assert_array_equal(a.state_dict()["scales"], b.state_dict()["scales"])
    assert a.stats["metric_spread"] > 0.0


def test_shell_campaigns_keep_an_isotropic_metric_and_small_perturbations_by_default():
    x0 = standard_normals(2, 0, 48)
    opt = RankSGD(x0, m=6, seed=2, shell=True)
    run(opt, sphere, 30)
    assert opt.state_dict()["scales"] is None  # no metric: the state stays as small as v1's
    assert opt.stats["metric_spread"] == 0.0
    assert opt.stats["radius"] == pytest.approx(0.2 * opt.stats["step"])
    restored = RankSGD.from_state_dict(loads_state(dumps_state(opt.state_dict())))
    np.testing.assert_array_equal(run(restored, sphere, 3)[-1], run(opt, sphere, 3)[-1])


def test_metric_on_a_shell_still_keeps_every_point_at_norm_sqrt_d():
    d = 12
    opt = RankSGD(standard_normals(2, 0, d), m=6, seed=2, shell=True, adapt_metric=True)
    proposed = run(opt, lambda x: axis_ellipsoid(100.0)(np.asarray(x) - 1.0), 300)
    for points in proposed[-20:]:
        np.testing.assert_allclose(np.linalg.norm(points, axis=1), math.sqrt(d), rtol=1e-9)
    assert opt.stats["metric_spread"] > 0.0


# ---------------------------------------------------------------------------- bad input
@pytest.fixture
def asked():
    opt = RankSGD(np.ones(4), m=5, seed=0)
    opt.ask()
    return opt


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ([], "empty"),
        ([5], "points 0..4"),
        ([-1], "points 0..4"),
        ([1, 1], "repeats"),
        ([0, 2, 0], "repeats"),
        ([0.0, 1.0], "integer"),
        (["0"], "integer"),
        ([True], "integer"),
        ("01", "list of integer"),
        (3, "list of integer"),
    ],
)
def test_malformed_orders_are_rejected(asked, order, message):
    with pytest.raises(InvalidInput, match=message):
        asked.tell(order)
    asked.tell([0])  # the failed tell did not consume the round


@pytest.mark.parametrize(
    ("preferences", "message"),
    [
        (np.ones((4, 4)), "shape"),
        (np.ones(5), "shape"),
        (-np.ones((5, 5)), ">= 0"),
        (np.full((5, 5), np.nan), "finite"),
        (np.eye(5), "no evidence"),
        ([["a"] * 5] * 5, "numeric"),
    ],
)
def test_malformed_preferences_are_rejected(asked, preferences, message):
    with pytest.raises(InvalidInput, match=message):
        asked.tell(preferences=preferences)


def test_exactly_one_of_order_and_preferences(asked):
    with pytest.raises(InvalidInput, match="exactly one"):
        asked.tell()
    with pytest.raises(InvalidInput, match="exactly one"):
        asked.tell([0], preferences=np.ones((5, 5)))


def test_tell_without_ask_and_double_tell_are_protocol_errors():
    opt = RankSGD(np.ones(4), m=5, seed=0)
    with pytest.raises(ProtocolError, match="ask"):
        opt.tell([0])
    opt.ask()
    opt.tell([0])
    with pytest.raises(ProtocolError, match="ask"):
        opt.tell([0])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"x0": np.ones(3), "m": 1}, "m must"),
        ({"x0": np.ones(3), "m": 4, "k": 5}, "k must"),
        ({"x0": np.ones(3), "m": 4, "k": 0}, "k must"),
        ({"x0": np.array([1.0, np.nan])}, "finite"),
        ({"x0": np.ones(0)}, "non-empty"),
        ({"x0": np.ones(3), "seed": -1}, "seed"),
        ({"x0": np.ones(3), "learning_rate": 0.1}, "unknown RankSGD option"),
        ({"x0": np.ones(3), "momentum": 1.0}, "momentum"),
        ({"x0": np.ones(3), "step": -1.0}, "step"),
        ({"x0": np.ones(3), "radius_ratio": 0.0}, "radius_ratio"),
        ({"x0": np.ones(3), "metric_rate": -1.0}, "metric_rate"),
    ],
)
def test_bad_constructor_arguments(arguments, message):
    with pytest.raises(InvalidInput, match=message):
        RankSGD(**arguments)


def test_an_unknown_option_is_invalid_input_naming_it_and_the_known_ones():
    # The render worker maps InvalidInput to a failed round with this message.
    with pytest.raises(InvalidInput) as error:
        RankSGD(np.ones(3), learning_rate=0.1, step=0.5)
    message = str(error.value)
    assert "['learning_rate']" in message
    for known in ("step", "radius_ratio", "min_radius", "gradient_rounds", "metric_rate"):
        assert f"'{known}'" in message


@pytest.mark.parametrize(
    "option",
    [{"step": "far"}, {"min_radius": None}, {"gradient_rounds": [3]}, {"momentum": {}}],
)
def test_an_option_value_that_is_not_a_number_is_invalid_input(option):
    (name,) = option
    with pytest.raises(InvalidInput, match=f"option {name}=.* is not a number"):
        RankSGD(np.ones(3), **option)


# ---------------------------------------------------------------------------- objectives
def test_objectives_are_vectorised_and_have_their_known_minima():
    assert rosenbrock(np.ones(7)) == 0.0
    assert ill_conditioned_quadratic(np.zeros(5)) == 0.0
    batch = np.random.default_rng(0).standard_normal((3, 4, 10))
    for objective in (
        rosenbrock,
        ill_conditioned_quadratic,
        make_projected_quadratic(10, rank=3),
        make_problem("rotated_quadratic", 10).objective,
    ):
        values = objective(batch)
        assert values.shape == (3, 4)
        np.testing.assert_allclose(values[1, 2], objective(batch[1, 2]))


def test_projected_objective_depends_only_on_a_low_dimensional_projection():
    d, rank = 40, 4
    f = make_projected_quadratic(d, rank=rank, seed=1)
    x = make_problem("projected", d, seed=1).x0
    # f is quadratic, so second differences give its Hessian exactly; its rank is the projection's.
    eye = np.eye(d)
    both = f(x + eye[:, None, :] + eye[None, :, :])
    single = f(x + eye)
    hessian = both - single[:, None] - single[None, :] + f(x)
    singular_values = np.linalg.svd(hessian, compute_uv=False)
    assert np.sum(singular_values > 1e-6 * singular_values[0]) == rank


def test_rotated_quadratic_has_the_ellipsoid_spectrum_in_another_basis():
    d = 6
    f = make_problem("rotated_quadratic", d, seed=2).objective
    eye = np.eye(d)
    hessian = f(eye[:, None, :] + eye[None, :, :]) - f(eye)[:, None] - f(eye)[None, :]
    curvatures = np.sort(np.linalg.eigvalsh(hessian / 2))
    np.testing.assert_allclose(curvatures, 1e6 ** (np.arange(d) / (d - 1)), rtol=1e-8)
    assert np.max(np.abs(hessian - np.diag(np.diag(hessian)))) > 1.0  # not axis-aligned


def test_make_problem_rejects_unknown_names():
    with pytest.raises(InvalidInput, match="unknown problem"):
        make_problem("cube", 3)


# ---------------------------------------------------------------------------- benchmark smoke
def test_bench_optimizer_quick_writes_a_table_and_json(tmp_path):
    from click.testing import CliRunner

    from rankloop.bench.optimizer import optimizer_command

    out = tmp_path / "optimizer.json"
    result = CliRunner().invoke(optimizer_command, ["--quick", "--seeds", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rankloop" in result.output and "cma" in result.output
    document = json.loads(out.read_text())
    assert document["benchmark"] == "optimizer"
    assert document["meta"]["quick"] is True
    assert len(document["rows"]) == 3
    for row in document["rows"]:
        for method in ("rankloop", "two_phase", "cma", "cma_tuned", "fixed_step", "authors_loop"):
            assert row[method] < 1.0  # a ratio f(x_T)/f(x_0): every method made progress
        assert row["target_met"] is (
            row["rankloop"] <= 0.5 * row["cma_tuned"] and row["rankloop"] <= row["fixed_step"]
        )
        assert row["vs_cma"] == pytest.approx(row["rankloop"] / row["cma"])
        assert row["rankloop_seeds"] == [row["rankloop"]]  # the median of one seed
        assert row["seeds"] == len(row["cma_tuned_seeds"]) == 1  # both on the same seeds
        assert row["cma_tuned"] == row["cma_tuned_seeds"][0]


def test_optimizer_module_imports_no_heavy_or_service_dependencies():
    import subprocess
    import sys

    code = (
        "import sys, rankloop.core.optimizer, rankloop.simulation.objectives; "
        "print(sorted(m for m in ('torch', 'celery', 'boto3', 'flask', 'sqlalchemy', 'diffusers')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
