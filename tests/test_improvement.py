"""The improvement curve: each round's best image's strength chained through the rankings
already given (rankloop.core.improvement)."""

from __future__ import annotations

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
    assert strengths[0] == 0.0 and all(b > a for a, b in zip(strengths, strengths[1:], strict=False))
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
