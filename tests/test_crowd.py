"""The crowd simulator: reproducible, and each kind of annotator behaves as its kind."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau

from rankloop.core.consensus import parse_ranking
from rankloop.core.errors import InvalidInput
from rankloop.simulation.crowd import Crowd, SimulatedAnnotator, make_crowd


def _mean_tau(annotator, rounds=60, n=8, scale="relative"):
    crowd = Crowd((annotator,), seed=1, scale=scale)
    rng = np.random.default_rng(0)
    taus = []
    for round_number in range(rounds):
        values = rng.standard_normal(n)
        (_, order), *_ = crowd.rank(values, round_number)
        position = np.empty(n)
        position[order] = np.arange(n)
        taus.append(kendalltau(position, values).statistic)
    return float(np.mean(taus))


def test_same_seed_same_answers_and_order_of_calls_does_not_matter():
    values = np.linspace(0, 1, 8)
    crowd = make_crowd(5, spammers=1, adversaries=1, k=3, dropout=0.3, tie_rate=0.3, seed=11)
    twin = make_crowd(5, spammers=1, adversaries=1, k=3, dropout=0.3, tie_rate=0.3, seed=11)
    later_first = twin.rank(values, round_number=4)
    assert crowd.rank(values, round_number=3) == twin.rank(values, round_number=3)
    assert crowd.rank(values, round_number=4) == later_first
    other = make_crowd(5, spammers=1, adversaries=1, k=3, dropout=0.3, tie_rate=0.3, seed=12)
    answers = [crowd.rank(values, r) for r in range(5)]
    assert answers != [other.rank(values, r) for r in range(5)]


def test_answers_are_valid_rankings_of_the_right_length():
    crowd = make_crowd(6, spammers=2, adversaries=1, k=3, seed=0)
    for round_number in range(10):
        for annotator, order in crowd.rank(np.arange(8.0), round_number):
            groups, _ = parse_ranking(order, 8, annotator)
            assert sum(len(g) for g in groups) == 3


def test_honest_ranks_well_adversary_reverses_spammer_is_random():
    honest = _mean_tau(SimulatedAnnotator("h", "honest", temperature=0.3))
    noisy = _mean_tau(SimulatedAnnotator("n", "honest", temperature=3.0))
    adversary = _mean_tau(SimulatedAnnotator("a", "adversary", temperature=0.3))
    spammer = _mean_tau(SimulatedAnnotator("s", "spammer"))
    # tau is computed with values (lower = better) against positions (0 = best): honest > 0
    assert honest > 0.6
    assert 0 < noisy < honest
    assert adversary < -0.6
    assert abs(spammer) < 0.15


def test_absolute_scale_loses_the_signal_when_items_are_close():
    tight = SimulatedAnnotator("h", "honest", temperature=0.5)

    def tau(scale):
        crowd = Crowd((tight,), seed=0, scale=scale)
        rng = np.random.default_rng(1)
        taus = []
        for round_number in range(60):
            values = 1e-3 * rng.standard_normal(8)  # nearly identical items
            (_, order), *_ = crowd.rank(values, round_number)
            position = np.empty(8)
            position[order] = np.arange(8)
            taus.append(kendalltau(position, values).statistic)
        return np.mean(taus)

    assert tau("relative") > 0.5
    assert abs(tau("absolute")) < 0.15


def test_dropout_rate():
    crowd = make_crowd(10, spammers=0, adversaries=0, dropout=0.4, seed=3)
    answered = [len(crowd.rank(np.arange(5.0), r)) for r in range(100)]
    assert 0.5 < np.mean(answered) / 10 < 0.7


def test_ties_are_declared_as_groups():
    crowd = Crowd((SimulatedAnnotator("t", tie_rate=0.5),), seed=0)
    groups_seen = 0
    for round_number in range(20):
        (_, order), *_ = crowd.rank(np.arange(6.0), round_number)
        flat = []
        for element in order:
            if isinstance(element, list):
                groups_seen += 1
                assert len(element) >= 2
                flat.extend(element)
            else:
                flat.append(element)
        assert sorted(flat) == list(range(6))
    assert groups_seen > 5


def test_attention_item_goes_to_the_bottom_for_honest_and_top_for_adversary():
    crowd = make_crowd(3, spammers=0, adversaries=1, temperature=0.5, seed=0)
    values = np.array([0.3, 0.1, 0.5, 0.2, 0.4, 0.0])
    for round_number in range(10):
        answers = dict(crowd.rank(values, round_number, attention=[5]))
        assert answers["h0"][-1] == 5 and answers["h1"][-1] == 5
        assert answers["a0"][0] == 5


def test_make_crowd_composition():
    crowd = make_crowd(7, spammers=2, adversaries=1, temperature=0.4, seed=5)
    kinds = crowd.kinds()
    assert list(kinds.values()).count("honest") == 4
    assert list(kinds.values()).count("spammer") == 2
    assert list(kinds.values()).count("adversary") == 1
    temperatures = [a.temperature for a in crowd.annotators if a.kind == "honest"]
    assert all(0.2 <= t <= 0.8 for t in temperatures)
    assert len(set(temperatures)) == 4


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_crowd(3, spammers=2, adversaries=2),
        lambda: SimulatedAnnotator("x", kind="troll"),
        lambda: SimulatedAnnotator("x", temperature=0.0),
        lambda: SimulatedAnnotator("x", k=0),
        lambda: SimulatedAnnotator("x", dropout=1.0),
        lambda: Crowd((SimulatedAnnotator("x"), SimulatedAnnotator("x"))),
        lambda: Crowd(()),
        lambda: Crowd((SimulatedAnnotator("x"),), scale="log"),
        lambda: make_crowd(3, 0, 0).rank([]),
        lambda: make_crowd(3, 0, 0).rank([1.0, np.nan]),
        lambda: make_crowd(3, 0, 0).rank([1.0, 2.0], attention=[0, 1]),
    ],
)
def test_bad_settings_are_clear_errors(build):
    with pytest.raises(InvalidInput):
        build()


def test_a_careless_annotator_answers_at_random_about_half_the_time():
    careless = SimulatedAnnotator("c", "careless", temperature=0.05, carelessness=0.5)
    utilities = np.arange(8, 0, -1, dtype=float)  # item 0 best, clearly
    answers = [careless.answer(utilities, np.random.default_rng(i)) for i in range(400)]
    honest = np.mean([answer == list(range(8)) for answer in answers])
    assert 0.4 < honest < 0.6  # the careful half is (nearly) always right
    with pytest.raises(InvalidInput):
        SimulatedAnnotator("c", "careless", carelessness=1.5)
