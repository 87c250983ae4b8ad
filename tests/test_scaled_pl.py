"""The scaled Plackett–Luce consensus (rankloop/core/consensus/scaled_pl.py): annotator scales
learnt with the items' utilities across a campaign's rounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import kendalltau

from rankloop.core.consensus import AnnotatorReliability, aggregate
from rankloop.core.consensus.evidence import parse_rankings
from rankloop.core.consensus.orientation import mirror_log_odds, mirrored_mean
from rankloop.core.consensus.scaled_pl import PRIOR_PRECISION, PRIOR_SCALE, fit_round
from rankloop.simulation.crowd import make_crowd


def campaign(k, seed, rounds=20, temperature=0.5):
    crowd = make_crowd(5, spammers=1, adversaries=1, temperature=temperature, k=k, seed=seed)
    rng = np.random.default_rng([seed, 17])
    reliability = AnnotatorReliability()
    taus = []
    for round_number in range(rounds):
        values = rng.standard_normal(8)
        consensus = aggregate(crowd.rank(values, round_number), 8, reliability=reliability)
        taus.append(kendalltau(np.argsort(consensus.order), values).statistic)
    return crowd, reliability, consensus, taus


@pytest.mark.parametrize("k", [None, 3])
def test_scales_are_learnt_across_rounds(k):
    crowd, reliability, consensus, taus = campaign(k, seed=1)
    scale = {a.id: reliability.scale(a.id)[0] for a in crowd.annotators}
    honest = [a for a in crowd.annotators if a.kind == "honest"]
    assert all(scale[a.id] > 0.8 for a in honest)
    assert abs(scale["s0"]) < 0.3  # a spammer: near zero
    assert scale["a0"] < -0.8  # an adversary: read backwards
    # The default consensus reports the scales as the annotators' weights.
    assert consensus.weights == pytest.approx({a: scale[a] for a in consensus.weights})
    # Precision grows with the evidence: more certain after 20 rounds than the prior.
    assert all(reliability.scale(a.id)[1] > 5 * PRIOR_PRECISION for a in crowd.annotators)
    assert np.mean(taus) > 0.5


def test_the_most_careful_honest_annotator_gets_the_largest_scale():
    crowd, reliability, _, _ = campaign(None, seed=3, rounds=30)
    honest = sorted(
        (a for a in crowd.annotators if a.kind == "honest"), key=lambda a: a.temperature
    )
    scales = [reliability.scale(a.id)[0] for a in honest]
    assert scales[0] == max(scales)


def test_one_annotator_without_history_gives_their_own_order():
    reliability = AnnotatorReliability()
    consensus = aggregate([("solo", [3, 1, 0])], 5, reliability=reliability)
    assert consensus.order == (3, 1, 0, 2, 4)  # unranked items follow in index order
    assert reliability.scale("solo") == (PRIOR_SCALE, PRIOR_PRECISION)  # nothing to learn from


def test_an_attention_item_is_placed_last_and_exposes_who_ranked_it_high():
    answers = [("h0", [0, 1, 2, 3]), ("h1", [1, 0, 2, 3]), ("x", [3, 2, 1, 0])]
    reliability = AnnotatorReliability()
    for _ in range(3):
        consensus = aggregate(answers, 4, reliability=reliability, known_worst=[3])
    assert consensus.order[-1] == 3
    assert reliability.scale("x")[0] < 0 < reliability.scale("h0")[0]


def test_known_scales_fit_only_the_utilities():
    parsed = parse_rankings([("a", [0, 1, 2]), ("b", [2, 1, 0])], 3)
    fixed = np.array([2.0, 0.0])  # b is known to be a spammer: only a counts
    fit = fit_round(parsed, 3, fixed, np.ones(2), fixed_scales=fixed)
    assert list(np.argsort(-fit.utilities)) == [0, 1, 2]
    np.testing.assert_array_equal(fit.scale_mean, fixed)


def test_reliability_with_scales_round_trips_and_version_1_still_loads():
    _, reliability, _, _ = campaign(3, seed=2, rounds=5)
    data = json.loads(json.dumps(reliability.to_dict()))
    assert data["version"] == 2
    restored = AnnotatorReliability.from_dict(data)
    assert restored.to_dict() == reliability.to_dict()
    assert restored.scale("a0") == reliability.scale("a0")
    old = {**data, "version": 1}
    del old["scales"]
    legacy = AnnotatorReliability.from_dict(old)
    assert legacy.scale("a0") == (PRIOR_SCALE, PRIOR_PRECISION)
    assert legacy.weight("a0") == reliability.weight("a0")  # the one-coin record is kept


def test_a_pool_seeds_scales_discounted():
    _, reliability, _, _ = campaign(None, seed=4, rounds=8)
    pool = AnnotatorReliability.combine([reliability.to_dict()])
    seeded = AnnotatorReliability(prior=pool.to_dict())
    mean, precision = seeded.scale("a0")
    assert mean < 0
    assert PRIOR_PRECISION <= precision < reliability.scale("a0")[1]


# -- orientation: the consensus never turns upside down (issue 23) -----------------------------


def sharp_campaign(seed, rounds=20, attention=False, order=None):
    """The issue's crowd: 3 honest at different noise, a spammer, an adversary as sharp as the
    best honest annotator; top-3 answers, fresh items every round."""
    crowd = make_crowd(5, spammers=1, adversaries=1, k=3, seed=seed, sharp_adversaries=True)
    rng = np.random.default_rng([seed, 17])
    reliability = AnnotatorReliability()
    taus, consensuses = [], []
    worst = [8] if attention else []
    for round_number in range(rounds):
        values = rng.standard_normal(8)
        shown = np.append(values, values.max()) if attention else values
        answers = crowd.rank(shown, round_number, worst)
        if order is not None:
            answers = [answers[i] for i in order]
        consensus = aggregate(answers, len(shown), reliability=reliability, known_worst=worst)
        real = [i for i in consensus.order if i < 8]
        taus.append(kendalltau(np.argsort(real), values).statistic)
        consensuses.append(consensus)
    return reliability, consensuses, taus


def test_the_sharp_adversary_crowd_has_the_adversary_as_sharp_as_the_best_honest():
    crowd = make_crowd(5, spammers=1, adversaries=1, seed=77, sharp_adversaries=True)
    honest = [a.temperature for a in crowd.annotators if a.kind == "honest"]
    assert crowd.annotators[-1].kind == "adversary"
    assert crowd.annotators[-1].temperature == min(honest) < 0.5


@pytest.mark.parametrize("seed", [77, 212])
def test_a_campaign_that_used_to_turn_upside_down_stays_the_right_way_up(seed):
    # These seeds spent all 20 rounds at a mean tau of about -0.7 before the orientation
    # check: the first rounds' thin evidence sided with the spammer and the adversary.
    reliability, _, taus = sharp_campaign(seed)
    assert np.mean(taus) > 0.4
    assert np.mean(taus[-10:]) > 0.6  # the right way up for good
    scale = {a: reliability.scale(a)[0] for a in ("h0", "h1", "h2", "s0", "a0")}
    assert min(scale["h0"], scale["h1"], scale["h2"]) > 0 > scale["a0"]


@pytest.mark.parametrize("attention", [False, True])
def test_an_honest_majority_consensus_correlates_positively_with_the_truth(attention):
    campaign_taus = [np.mean(sharp_campaign(seed, 20, attention)[2]) for seed in (77, 214, 542)]
    assert min(campaign_taus) > 0.3


def test_the_fit_does_not_depend_on_the_order_of_the_answers():
    forward, ahead, _ = sharp_campaign(77, rounds=6)
    backward, behind, _ = sharp_campaign(77, rounds=6, order=[4, 3, 2, 1, 0])
    for one, other in zip(ahead, behind, strict=True):
        assert one.order == other.order
        np.testing.assert_allclose(one.scores, other.scores, atol=1e-6)
        assert one.weights == pytest.approx(other.weights, abs=1e-6)
    one, other = forward.to_dict()["scales"], backward.to_dict()["scales"]
    assert one.keys() == other.keys()
    for key in one:
        assert one[key] == pytest.approx(other[key])


def test_the_mirror_of_a_reversed_majority_is_preferred_and_mirroring_twice_is_identity():
    # Three annotators confidently negative, one positive, a spammer: read the other way up.
    mean = np.array([-1.0, -1.2, -0.9, 1.5, 0.1])
    precision = np.array([8.0, 8.0, 8.0, 8.0, 8.0])
    none = np.zeros(5)
    assert mirror_log_odds(mean, none, none) < 0
    mirrored = mirrored_mean(mean, precision)
    assert mirror_log_odds(mirrored, none, none) > 0
    np.testing.assert_allclose(mirrored_mean(mirrored, precision), mean)
    # A belief never updated is the prior, whichever way up.
    assert mirrored_mean(np.array([PRIOR_SCALE]), np.array([PRIOR_PRECISION]))[0] == PRIOR_SCALE


def test_attention_checks_outweigh_the_honest_majority_prior():
    # The same beliefs, but the three negative annotators failed their checks and the positive
    # one passed: the present mode is the right one (a reversed majority, shown up by checks).
    mean = np.array([-1.0, -1.2, -0.9, 1.5, 0.1])
    passed = np.array([0.0, 0.0, 0.0, 4.0, 2.0])
    failed = np.array([4.0, 4.0, 4.0, 0.0, 2.0])
    assert mirror_log_odds(mean, passed, failed) > 0


def test_a_sharp_adversary_counts_as_one_annotator_not_by_their_sharpness():
    # The scales sum to a negative number, yet three honest annotators against one adversary
    # keep the present mode.
    mean = np.array([1.0, 1.2, 0.9, 0.0, -10.0])
    assert mean.sum() < 0
    assert mirror_log_odds(mean, np.zeros(5), np.zeros(5)) > 0
