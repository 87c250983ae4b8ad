"""The quorum rules in simulation and their benchmark's pieces (no services)."""

from __future__ import annotations

import numpy as np
import pytest

from rankloop.bench.campaign import objectives
from rankloop.bench.campaign_quorum import at_spend, judge, run_rule
from rankloop.core.errors import InvalidInput
from rankloop.simulation.quorum import QuorumRule, attention_failed, parse_quorums, round_wall_time


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
