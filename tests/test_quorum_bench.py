"""The quorum rules in simulation and their benchmark's pieces (no services)."""

from __future__ import annotations

import numpy as np
import pytest

from rankloop.bench.campaign import objectives
from rankloop.bench.campaign_quorum import (
    at_spend,
    judge,
    quorum_crowd,
    run_rule,
    two_taste_objectives,
)
from rankloop.bench.quorum_stats import at_spent, paired_interval
from rankloop.core.errors import InvalidInput
from rankloop.simulation.crowd import Crowd, SimulatedAnnotator
from rankloop.simulation.quorum import QuorumRule, attention_failed, parse_quorums, round_wall_time
from rankloop.simulation.tastes import TastesCrowd, mixed_problem


def test_quorum_rules_parse():
    assert [r.label for r in parse_quorums("fixed:3, fixed:5,adaptive:2-5")] == [
        "fixed:3",
        "fixed:5",
        "adaptive:2-5",
    ]
    for bad in ("fixed", "adaptive:5-2", "mean:3", "fixed:0"):
        with pytest.raises(InvalidInput):
            QuorumRule.parse(bad)


def test_a_fixed_rule_takes_its_size_and_an_adaptive_one_stops_when_settled():
    answers = [(f"a{i}", [0, 1, 2]) for i in range(5)]
    rng = np.random.default_rng(0)
    assert len(QuorumRule.parse("fixed:3").take(answers, rng, lambda _: False)) == 3
    adaptive = QuorumRule.parse("adaptive:2-5")
    assert len(adaptive.take(answers, rng, lambda _: True)) == 2
    assert len(adaptive.take(answers, rng, lambda _: False)) == 5
    assert len(adaptive.take(answers, rng, lambda subset: len(subset) >= 3)) == 3


def test_attention_rule_matches_the_coordinator():
    assert not attention_failed([0, 1, 2], [4], 5)
    assert attention_failed([4, 0, 1], [4], 5)
    assert not attention_failed([0, 1, 2, 3, 4], [4], 5)
    assert attention_failed([0, [1, 4]], [4], 5)


def test_straggler_offers_never_make_a_round_slower():
    for seed in range(200):
        for needed, low in ((3, 3), (5, 2), (2, 2)):
            plain = round_wall_time(needed, low, np.random.default_rng(seed))
            offered = round_wall_time(needed, low, np.random.default_rng(seed), straggler_after=1.5)
            assert offered <= plain


def test_an_adaptive_campaign_stays_within_its_cap():
    objective = objectives()[0]
    curve, spent = run_rule(objective, QuorumRule.parse("adaptive:2-4"), 0, 4, False, 8, 3)
    assert len(curve) == 4 and all(2 <= n <= 4 for n in spent)


def test_judge_reads_the_targets():
    def row(median, spent, p90, offers):
        return {
            "median@10": median,
            "rankings@10": spent,
            "wall p90 s": p90,
            "offers p90 s": offers,
        }

    found = {
        "fixed:3": {"row": row(0.5, 30, 60, 40), "curve": np.linspace(0.1, 0.6, 20)},
        "fixed:5": {"row": row(0.6, 50, 70, 60), "curve": np.linspace(0.1, 0.7, 20)},
        "adaptive:2-5": {"row": row(0.6, 30, 60, 40), "curve": np.linspace(0.1, 0.7, 20)},
    }
    rules = parse_quorums("fixed:3,fixed:5,adaptive:2-5")
    verdict = judge(found, rules, 10)
    assert verdict["adaptive:2-5 vs fixed:5"]["met"]
    assert verdict["adaptive:2-5 vs fixed:3"]["met"]
    assert verdict["fixed:3 straggler p90 cut"]["met"]
    assert not verdict["fixed:5 straggler p90 cut"]["met"]
    assert at_spend(np.array([0.2, 0.4]), 3.0, 4.5) == pytest.approx(0.3)


def test_an_offer_the_instant_all_but_the_last_are_in_is_the_most_an_offer_saves():
    for seed in range(200):
        for needed in (2, 3, 5):  # one offer per round (a fixed quorum)
            low = needed
            offered = round_wall_time(needed, low, np.random.default_rng(seed), straggler_after=1.0)
            bound = round_wall_time(
                needed, low, np.random.default_rng(seed), straggler_after=0.0, sweep_s=0.0
            )
            assert bound <= offered


def test_a_two_tastes_crowd_ranks_by_each_group_s_taste():
    first = lambda x: np.asarray(x, dtype=float)[..., 0] ** 2  # noqa: E731
    second = lambda x: (np.asarray(x, dtype=float)[..., 0] - 3.0) ** 2  # noqa: E731
    crowd = quorum_crowd(0, 4, 2, False, (first, second))
    assert isinstance(crowd, TastesCrowd)
    points = np.array([[0.0], [3.0], [1.5], [10.0]])
    sharp = TastesCrowd(
        tuple(Crowd((SimulatedAnnotator(f"x{g}", "honest", 0.01, k=1),), seed=g) for g in range(2)),
        (first, second),
    )
    answers = dict(sharp.rank_points(points, 0, [4]))
    assert answers == {"x0": [0], "x1": [1]}  # each its own favourite
    assert sorted(a for a, _ in crowd.rank_points(points, 0, [4])) == ["c2", "h0", "h1", "h3"]
    mixed = mixed_problem("mix", np.array([1.0]), (first, lambda x: second(x) + 1.0))
    assert mixed.objective(np.array([1.0])) == pytest.approx(1.0)  # each taste relative to x0


def test_the_two_tastes_objectives_steer_within_the_cap():
    two = two_taste_objectives(objectives()[:1])
    assert two[0].label == "cppn colour + contrast"
    curve, spent = run_rule(two[0], QuorumRule.parse("adaptive:2-3"), 0, 3, False, 8, 3)
    assert len(curve) == 3 and all(2 <= n <= 3 for n in spent)


def test_improvement_at_equal_rankings_spent():
    assert at_spent([0.2, 0.4], [2, 2], 3.0) == pytest.approx(0.3)
    assert at_spent([0.2, 0.4], [2, 2], 10.0) == pytest.approx(0.4)  # its last round
    assert at_spent([0.2, 0.4], [5, 2], 6.0) == pytest.approx(0.3)  # where its total crosses


def test_a_paired_interval_sees_a_steady_difference_that_the_medians_hide():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, 20)  # campaigns vary much more than the rules do
    diff, low, high = paired_interval(base + 0.02, base)
    assert diff == pytest.approx(0.02) and low == pytest.approx(0.02)
    _, low, high = paired_interval(base + rng.normal(0, 0.05, 20), base)
    assert low < 0.0 < high


def test_a_rule_may_carry_the_settle_rule_s_prior():
    rule = QuorumRule.parse("adaptive:2-5@0.6+1")
    assert (rule.confidence, rule.prior, rule.label) == (0.6, 1.0, "adaptive:2-5@0.6+1")
    assert QuorumRule.parse("adaptive:2-5").prior == 0.0
    for bad in ("fixed:3+1", "adaptive:2-5+x", "adaptive:2-5+-1"):
        with pytest.raises(InvalidInput):
            QuorumRule.parse(bad)


def test_a_rule_may_learn_its_prior_and_weigh_a_wrong_move():
    rule = QuorumRule.parse("adaptive:2-5+eb*3")
    assert (rule.prior, rule.move_cost, rule.label) == ("campaign", 3.0, "adaptive:2-5+eb*3")
    assert QuorumRule.parse("adaptive:2-5").move_cost == 1.0
    for bad in ("fixed:3*3", "adaptive:2-5*0.5", "adaptive:2-5*x"):
        with pytest.raises(InvalidInput):
            QuorumRule.parse(bad)


def test_a_noisier_crowd_has_hotter_annotators():
    plain = quorum_crowd(0, 5, 3, False)
    noisy = quorum_crowd(0, 5, 3, False, noise=2.0)
    assert isinstance(plain, Crowd) and isinstance(noisy, Crowd)
    for a, b in zip(plain.annotators, noisy.annotators, strict=True):
        assert (b.id, b.kind, b.temperature) == (a.id, a.kind, 2.0 * a.temperature)
