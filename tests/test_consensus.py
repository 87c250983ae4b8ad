"""The consensus engine: rules, reliability learning, partial input, bad input."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau

from rankloop.core.consensus import (
    METHODS,
    AnnotatorReliability,
    aggregate,
    kemeny_order,
    kendall_w,
    pairwise_matrix,
    parse_ranking,
)
from rankloop.core.errors import InvalidInput
from rankloop.simulation.crowd import make_crowd


def _kemeny_cost(order, pairwise):
    return sum(pairwise[b, a] for i, a in enumerate(order) for b in order[i + 1 :])


# ------------------------------------------------------------------ basic behaviour


@pytest.mark.parametrize("method", METHODS)
def test_unanimous_input_returns_that_order(method):
    order = [4, 2, 0, 5, 1, 3]
    rankings = [(f"a{i}", order) for i in range(4)]
    consensus = aggregate(rankings, 6, method=method)
    assert list(consensus.order) == order
    assert consensus.agreement == pytest.approx(1.0)
    assert consensus.method == method
    # scores agree with the order: strictly decreasing along it
    assert np.all(np.diff(consensus.scores[list(consensus.order)]) < 0)


@pytest.mark.parametrize("method", METHODS)
def test_single_full_ranking_passes_through(method):
    order = [7, 3, 5, 0, 6, 1, 2, 4]
    consensus = aggregate([("only", order)], 8, method=method)
    assert list(consensus.order) == order
    assert consensus.weights.keys() == {"only"}


@pytest.mark.parametrize("method", METHODS)
def test_single_top_k_ranking_keeps_its_prefix_and_unranked_follow_in_index_order(method):
    consensus = aggregate([("only", [5, 2, 7])], 8, method=method)
    assert list(consensus.order) == [5, 2, 7, 0, 1, 3, 4, 6]


@pytest.mark.parametrize("method", METHODS)
def test_majority_beats_a_lone_dissenter(method):
    truth = [0, 1, 2, 3, 4]
    rankings = [("a", truth), ("b", truth), ("c", truth), ("d", truth[::-1])]
    assert list(aggregate(rankings, 5, method=method).order) == truth


def test_pairwise_is_weighted_evidence_and_nonnegative():
    rankings = [("a", [0, 1, 2]), ("b", [0, 2, 1])]
    consensus = aggregate(rankings, 3, method="borda")
    expected = np.array([[0, 2, 2], [0, 0, 1], [0, 1, 0]], dtype=float)
    np.testing.assert_array_equal(consensus.pairwise, expected)
    assert consensus.weights == {"a": 1.0, "b": 1.0}
    with pytest.raises(ValueError):
        consensus.pairwise[0, 1] = 5.0  # read-only: a frozen result


def test_consensus_to_dict_is_json():
    consensus = aggregate([("a", [2, 0, 1]), (7, [2, 1, 0])], 3)
    data = json.loads(json.dumps(consensus.to_dict()))
    assert data == {
        "order": [2, 0, 1],
        "scores": consensus.scores.tolist(),
        "weights": {"a": consensus.weights["a"], "7": consensus.weights[7]},  # keys as strings
        "agreement": consensus.agreement,
        "pairwise": consensus.pairwise.tolist(),
        "method": "auto",
    }


def test_the_flat_public_api_is_re_exported_by_the_package():
    import rankloop.core.consensus as package

    public_before_the_split = {
        "METHODS",
        "KEMENY_EXACT_MAX",
        "AnnotatorReliability",
        "Consensus",
        "aggregate",
        "kemeny_order",
        "kendall_w",
        "pairwise_matrix",
        "parse_ranking",
    }
    assert public_before_the_split <= set(package.__all__)
    assert [name for name in package.__all__ if not hasattr(package, name)] == []


# ------------------------------------------------------------------ partial input


def test_top_k_says_ranked_beat_unranked_and_nothing_more():
    groups, shown = parse_ranking([3, 1], 5)
    matrix = pairwise_matrix(groups, shown, 5)
    assert matrix[3].tolist() == [1, 1, 1, 0, 1]
    assert matrix[1].tolist() == [1, 0, 1, 0, 1]
    assert matrix[[0, 2, 4]].sum() == 0  # no statement among unranked items


def test_subset_ranking_compares_only_shown_items():
    consensus = aggregate([("a", [4, 1], [1, 2, 4]), ("b", [0, 3, 2, 1, 4])], 5, method="borda")
    # annotator a saw 1, 2, 4 only: it says nothing about 0 or 3
    ranked_a = consensus.pairwise - aggregate([("b", [0, 3, 2, 1, 4])], 5, "borda").pairwise
    assert ranked_a[4, 1] == 1 and ranked_a[4, 2] == 1 and ranked_a[1, 2] == 1
    assert ranked_a[:, [0, 3]].sum() == 0 and ranked_a[[0, 3], :].sum() == 0


def test_plackett_luce_top_k_matches_explicit_choice_decomposition():
    import choix

    rankings = [("a", [0, 1]), ("b", [1, 2]), ("c", [0, 2]), ("d", [3, 0])]
    consensus = aggregate(rankings, 4, method="plackett_luce")
    choices = [
        (0, (1, 2, 3)),
        (1, (2, 3)),
        (1, (0, 2, 3)),
        (2, (0, 3)),
        (0, (1, 2, 3)),
        (2, (1, 3)),
        (3, (0, 1, 2)),
        (0, (1, 2)),
    ]
    expected = choix.ilsr_top1(4, choices, alpha=0.01, max_iter=500)
    np.testing.assert_allclose(consensus.scores, expected, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_declared_ties(method):
    # Everyone ties 1 and 2; they sit between 0 and 3, and the tie is settled by index.
    rankings = [("a", [0, [1, 2], 3]), ("b", [0, (2, 1), 3])]
    consensus = aggregate(rankings, 4, method=method)
    assert list(consensus.order) == [0, 1, 2, 3]
    assert consensus.pairwise[1, 2] == 0 and consensus.pairwise[2, 1] == 0
    assert consensus.agreement == pytest.approx(1.0)


def test_tie_in_a_top_k_answer_beats_the_unranked():
    groups, shown = parse_ranking([[2, 0]], 4)
    matrix = pairwise_matrix(groups, shown, 4)
    assert matrix[2, 0] == 0 and matrix[0, 2] == 0
    assert matrix[2, [1, 3]].tolist() == [1, 1] and matrix[0, [1, 3]].tolist() == [1, 1]


def test_known_worst_goes_last_and_counts_against_who_ranks_it_high():
    reliability = AnnotatorReliability()
    rankings = [("honest", [0, 1, 2, 3]), ("careless", [3, 0, 1, 2]), ("other", [0, 2, 1, 3])]
    consensus = aggregate(rankings, 4, reliability=reliability, known_worst=[3])
    assert consensus.order[-1] == 3
    summary = reliability.summary()
    assert summary["careless"]["checks_failed"] == 1.0
    assert summary["honest"]["checks_passed"] == 1.0
    assert consensus.weights["careless"] < consensus.weights["honest"]


def test_agreement_leaves_attention_items_out():
    rankings = [("a", [0, 1, 2, 3]), ("b", [3, 1, 0, 2])]
    with_check = aggregate(rankings, 4, known_worst=[3]).agreement
    real_only = aggregate([("a", [0, 1, 2]), ("b", [1, 0, 2])], 3).agreement
    assert with_check == pytest.approx(real_only)


def test_known_worst_is_judged_for_top_k_answers_too():
    reliability = AnnotatorReliability()
    aggregate([("a", [0, 1]), ("b", [4, 0])], 5, reliability=reliability, known_worst=[4])
    summary = reliability.summary()
    assert summary["a"]["checks_passed"] == 1.0 and summary["a"]["checks_failed"] == 0.0
    assert summary["b"]["checks_failed"] == 1.0


# ------------------------------------------------------------------ agreement


def test_kendall_w_bounds():
    assert kendall_w([[1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)
    assert kendall_w([[1, 2, 3], [3, 2, 1]]) == pytest.approx(0.0)
    assert kendall_w([[1, 2, 3, 4]]) == pytest.approx(1.0)


def test_agreement_drops_with_disagreement():
    same = aggregate([("a", [0, 1, 2, 3]), ("b", [0, 1, 2, 3])], 4).agreement
    mixed = aggregate([("a", [0, 1, 2, 3]), ("b", [1, 0, 3, 2])], 4).agreement
    opposed = aggregate([("a", [0, 1, 2, 3]), ("b", [3, 2, 1, 0])], 4).agreement
    assert same > mixed > opposed


# ------------------------------------------------------------------ reliability


def _campaign(rounds, seed, k=None, attention=False):
    crowd = make_crowd(5, spammers=1, adversaries=1, temperature=0.5, k=k, seed=seed)
    rng = np.random.default_rng(seed)
    reliability = AnnotatorReliability()
    history = []
    for round_number in range(rounds):
        values = rng.standard_normal(8)
        items = 9 if attention else 8
        shown = np.append(values, values.max()) if attention else values
        worst = [8] if attention else None
        answers = crowd.rank(shown, round_number, attention=worst or ())
        consensus = aggregate(answers, items, reliability=reliability, known_worst=worst)
        history.append(consensus.weights)
    return reliability, history


@pytest.mark.parametrize("k", [None, 3])
def test_spammers_and_adversaries_lose_weight_over_rounds(k):
    reliability, history = _campaign(15, seed=1, k=k)
    first, last = history[0], history[-1]
    honest = [a for a in last if a.startswith("h")]
    assert min(last[h] for h in honest) > 1.0
    assert abs(last["s0"]) < 0.5 * min(last[h] for h in honest)
    assert last["a0"] < 0  # read backwards
    assert last["a0"] <= first["a0"]  # and more surely so than at the start
    weights_a0 = [w["a0"] for w in history]
    assert np.mean(weights_a0[-5:]) < np.mean(weights_a0[:3]) < max(first[h] for h in honest)
    assert reliability.rounds("a0") == 15


def test_first_round_without_history_already_discounts_the_adversary():
    truth = list(range(8))
    rng = np.random.default_rng(0)
    rankings = [(f"h{i}", truth) for i in range(3)]
    rankings.append(("s", [int(i) for i in rng.permutation(8)]))
    rankings.append(("adv", truth[::-1]))
    consensus = aggregate(rankings, 8, reliability=AnnotatorReliability())
    assert list(consensus.order) == truth
    assert consensus.weights["adv"] < 0 < consensus.weights["h0"]


def test_auto_beats_borda_with_an_adversary():
    crowd = make_crowd(5, spammers=1, adversaries=1, temperature=0.5, seed=3)
    rng = np.random.default_rng(3)
    reliability = AnnotatorReliability()
    hits = {"auto": 0, "borda": 0}
    for round_number in range(12):
        values = rng.standard_normal(8)
        answers = crowd.rank(values, round_number)
        best = int(np.argmin(values))
        hits["auto"] += aggregate(answers, 8, reliability=reliability).order[0] == best
        hits["borda"] += aggregate(answers, 8, method="borda").order[0] == best
    assert hits["auto"] > hits["borda"]


def test_attention_checks_expose_an_adversary():
    reliability, _ = _campaign(4, seed=2, attention=True)
    summary = reliability.summary()
    assert summary["a0"]["checks_failed"] > 3.5
    assert summary["h0"]["checks_passed"] > 3.5
    assert summary["a0"]["weight"] < 0 < summary["h0"]["weight"]


def test_attention_checks_rescue_a_reversed_majority():
    # Three adversaries outvote two honest annotators; agreement alone cannot tell who is who,
    # the attention item (which the reversed answers put on top) can.
    crowd = make_crowd(5, spammers=0, adversaries=3, temperature=0.5, seed=0)
    rng = np.random.default_rng(0)
    reliability = AnnotatorReliability()
    taus = []
    for round_number in range(8):
        values = rng.standard_normal(8)
        answers = crowd.rank(np.append(values, values.max()), round_number, attention=[8])
        consensus = aggregate(answers, 9, reliability=reliability, known_worst=[8])
        order = [i for i in consensus.order if i < 8]
        taus.append(kendalltau(np.argsort(order), values).statistic)
    assert np.mean(taus) > 0.5
    assert all(consensus.weights[a] < 0 for a in ("a0", "a1", "a2"))
    assert consensus.weights["h0"] > 0 and consensus.weights["h1"] > 0


def test_reliability_round_trips_through_json():
    reliability, _ = _campaign(3, seed=4, attention=True)
    data = json.loads(json.dumps(reliability.to_dict()))
    restored = AnnotatorReliability.from_dict(data)
    assert restored.to_dict() == reliability.to_dict()
    for annotator in reliability.annotators:
        assert restored.weight(annotator) == reliability.weight(annotator)
    # and it keeps learning identically
    rankings = [("h0", [0, 1, 2]), ("a0", [2, 1, 0]), ("new", [0, 2, 1])]
    first = aggregate(rankings, 3, reliability=reliability)
    second = aggregate(rankings, 3, reliability=restored)
    assert first.weights == second.weights
    assert restored.to_dict() == reliability.to_dict()


def test_integer_annotator_ids_survive_the_round_trip():
    reliability = AnnotatorReliability()
    order = [0, 1, 2, 3, 4, 5]
    rankings = [(17, order), (18, order), (19, order[::-1])]
    aggregate(rankings, 6, reliability=reliability)
    restored = AnnotatorReliability.from_dict(json.loads(json.dumps(reliability.to_dict())))
    assert restored.weight(19) == reliability.weight(19) < 0


def test_seeding_from_a_pool_prior():
    pool, _ = _campaign(10, seed=5)
    seeded = AnnotatorReliability(prior=pool.to_dict())
    fresh = AnnotatorReliability()
    assert seeded.weight("a0") < 0 < seeded.weight("h0")
    assert fresh.weight("a0") == fresh.weight("h0") > 0
    # seeded evidence is discounted, and kept apart from the campaign's own
    assert abs(seeded.weight("a0")) < abs(pool.weight("a0"))
    assert seeded.rounds("a0") == 0
    again = AnnotatorReliability.from_dict(seeded.to_dict())
    assert again.weight("a0") == seeded.weight("a0")


def test_combining_campaigns_into_a_pool_counts_each_round_once():
    first, _ = _campaign(6, seed=6)
    second, _ = _campaign(6, seed=7)
    pool = AnnotatorReliability.combine([first.to_dict(), second.to_dict()])
    assert pool.rounds("a0") == 12
    assert pool.weight("a0") < min(first.weight("a0"), second.weight("a0")) + 1e-9
    # a campaign seeded from the pool contributes only its own rounds when pooled again
    seeded = AnnotatorReliability(prior=pool.to_dict())
    assert AnnotatorReliability.combine([seeded.to_dict()]).annotators == []
    aggregate([("a0", [1, 0, 2])], 3, reliability=seeded)
    assert AnnotatorReliability.combine([pool.to_dict(), seeded.to_dict()]).rounds("a0") == 13


def test_reliability_is_updated_for_every_method():
    reliability = AnnotatorReliability()
    aggregate([("a", [0, 1, 2]), ("b", [0, 1, 2])], 3, method="borda", reliability=reliability)
    assert reliability.rounds("a") == 1 and reliability.rounds("b") == 1


# ------------------------------------------------------------------ Kemeny


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=6),
    data=st.data(),
)
def test_kemeny_exact_equals_brute_force(n, data):
    weights = data.draw(
        st.lists(st.integers(min_value=0, max_value=5), min_size=n * n, max_size=n * n)
    )
    pairwise = np.array(weights, dtype=float).reshape(n, n)
    np.fill_diagonal(pairwise, 0.0)
    best = min(_kemeny_cost(p, pairwise) for p in itertools.permutations(range(n)))
    order = kemeny_order(pairwise)
    assert sorted(order) == list(range(n))
    assert _kemeny_cost(order, pairwise) == pytest.approx(best)


def test_kemeny_heuristic_beyond_exact_size_is_a_good_order():
    rng = np.random.default_rng(0)
    n = 12
    truth = rng.permutation(n)
    rankings = []
    for i in range(7):
        noisy = np.argsort(np.argsort(truth) + rng.normal(0, 1.5, n))
        rankings.append((f"a{i}", [int(x) for x in noisy]))
    consensus = aggregate(rankings, n, method="kemeny")
    heuristic_cost = _kemeny_cost(list(consensus.order), consensus.pairwise)
    exact = kemeny_order(consensus.pairwise, exact_max=n)
    assert heuristic_cost <= _kemeny_cost(exact, consensus.pairwise) * 1.05 + 1e-9
    borda = aggregate(rankings, n, method="borda").order
    assert heuristic_cost <= _kemeny_cost(list(borda), consensus.pairwise) + 1e-9


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("rankings", "n_items", "message"),
    [
        ([("a", [0, 5])], 5, "out of range"),
        ([("a", [0, -1])], 5, "out of range"),
        ([("a", [0, 1, 0])], 5, "twice"),
        ([("a", [0, [1, 0]])], 5, "twice"),
        ([("a", [])], 5, "empty ranking"),
        ([("a", [0, []])], 5, "empty tie group"),
        ([("a", [0, [1, [2]]])], 5, "nested"),
        ([("a", [0, 1.5])], 5, "not an item index"),
        ([("a", [0, "1"])], 5, "not an item index"),
        ([("a", [True, 0])], 5, "not an item index"),
        ([("a", "012")], 5, "list of item indices"),
        ([("a", [0, 1], [0])], 5, "not shown"),
        ([("a", [0, 1], [0, 1, 9])], 5, "out of range"),
        ([("a", [0, 1]), ("a", [1, 0])], 5, "twice"),
        ([(None, [0, 1])], 5, "annotator ids"),
        ([("a",)], 5, "annotator_id, order"),
        ([], 5, "no rankings"),
        ({"a": [0, 1]}, 5, "list of"),
        ([("a", [0])], 0, "positive integer"),
        ([("a", [0])], 2.0, "positive integer"),
    ],
)
def test_bad_input_is_a_clear_error(rankings, n_items, message):
    with pytest.raises(InvalidInput, match=message):
        aggregate(rankings, n_items)


def test_unknown_method():
    with pytest.raises(InvalidInput, match="unknown consensus method 'median'"):
        aggregate([("a", [0, 1])], 2, method="median")


def test_known_worst_out_of_range():
    with pytest.raises(InvalidInput, match="out of range"):
        aggregate([("a", [0, 1])], 2, known_worst=[2])


@pytest.mark.parametrize(
    "data",
    [{}, {"version": 99}, {"version": 1, "prior_agree": 3.0}, "x"],
)
def test_malformed_reliability_dict(data):
    with pytest.raises(InvalidInput):
        AnnotatorReliability.from_dict(data)


def test_bad_reliability_parameters():
    with pytest.raises(InvalidInput):
        AnnotatorReliability(prior_discount=2.0)
    with pytest.raises(InvalidInput):
        AnnotatorReliability(prior_agree=0.0)
