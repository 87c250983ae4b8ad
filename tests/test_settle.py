"""The adaptive quorum's settle rule (rankloop.core.settle): pure, no services."""

from __future__ import annotations

import numpy as np
import pytest

from rankloop.core.campaign_settings import CampaignFields, CampaignSettings, first_quorum
from rankloop.core.optimizer import RankSGD
from rankloop.core.settle import decision, settle_round, settlement

N_ITEMS = 9  # eight candidates and the attention image
ATTENTION = 8
MOVE = [3, 1, 5]  # the current point (shown at 3) first, then the two trials


def settle(rankings, *, move_items=MOVE, failed=(), seed=7, feed="pairwise", weights=None):
    if weights is not None:
        candidates = [i for i in range(N_ITEMS) if i != ATTENTION]
        return settlement(
            rankings,
            N_ITEMS,
            weights=weights,
            move_items=move_items,
            candidates=candidates,
            failed_check=failed,
            feed=feed,
            seed=seed,
        )
    return settle_round(
        rankings,
        N_ITEMS,
        method="auto",
        reliability=None,
        known_worst=[ATTENTION],
        failed_check=failed,
        move_items=move_items,
        feed=feed,
        seed=seed,
    )


def test_unanimous_round_is_settled_at_two():
    result = settle([("a", [1, 0, 2]), ("b", [1, 2, 0])])
    assert result.decision == 1
    assert result.settled(0.9)


def test_split_round_is_not_settled():
    # One moves the point to the long trial, the other to the short one.
    result = settle([("a", [1, 0, 2]), ("b", [5, 2, 0])])
    assert not result.settled(0.9)
    assert 0.3 < result.confidence < 0.7


def test_a_third_agreeing_ranking_raises_the_confidence():
    two = settle([("a", [1, 0, 2]), ("b", [5, 2, 0])])
    three = settle([("a", [1, 0, 2]), ("b", [5, 2, 0]), ("c", [1, 4, 7])])
    assert three.confidence > two.confidence
    assert three.decision == 1


def test_invariant_to_annotator_order():
    rankings = [("a", [1, 0, 2]), ("b", [5, 2, 0]), ("c", [1, 4, 7]), ("d", [3, 6, 1])]
    first = settle(rankings)
    for permutation in ([3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]):
        again = settle([rankings[i] for i in permutation])
        assert again == first


@pytest.mark.parametrize("feed", ["pairwise", "order"])
@pytest.mark.parametrize("move_items", [MOVE, None])
def test_invariant_to_item_order(feed, move_items):
    rankings = [("a", [1, 0, 2]), ("b", [5, 2, 0]), ("c", [1, 4, 7]), ("d", [3, 6, 1])]
    weights = {"a": 1.0, "b": 0.7, "c": 1.3, "d": 0.4}
    first = settle(rankings, move_items=move_items, feed=feed, weights=weights)
    rng = np.random.default_rng(0)
    for _ in range(3):
        relabel = [*rng.permutation(N_ITEMS - 1).tolist(), ATTENTION]  # the check stays last
        moved = [(a, [relabel[i] for i in order]) for a, order in rankings]
        moves = None if move_items is None else [relabel[i] for i in move_items]
        again = settle(moved, move_items=moves, feed=feed, weights=weights)
        assert again.confidence == first.confidence
        expected = None if first.decision is None else relabel[first.decision]
        assert again.decision == expected


def test_deterministic_from_the_round_seed():
    rankings = [("a", [1, 0, 2]), ("b", [5, 2, 0]), ("c", [1, 4, 7])]
    assert settle(rankings, seed=3) == settle(rankings, seed=3)


def test_a_failed_attention_check_counts_for_less():
    weights = {"a": 1.0, "b": 1.0, "c": 1.0}
    rankings = [("a", [1, 0, 2]), ("b", [1, 2, 0]), ("c", [5, ATTENTION, 0])]
    honest = settle(rankings, weights=weights)
    checked = settle(rankings, weights=weights, failed=["c"])
    assert checked.confidence > honest.confidence
    assert checked.decision == 1


def test_a_low_reliability_annotator_counts_for_less():
    rankings = [("a", [1, 0, 2]), ("b", [1, 2, 0]), ("c", [5, 0, 2])]
    even = settle(rankings, weights={"a": 1.0, "b": 1.0, "c": 1.0})
    doubtful = settle(rankings, weights={"a": 1.0, "b": 1.0, "c": 0.05})
    assert doubtful.confidence > even.confidence


def test_staying_is_a_decision():
    # Nobody ranks a trial above the current point: the point stays, settled.
    result = settle([("a", [3, 0, 2]), ("b", [3, 2, 0])])
    assert result.decision == 3
    assert result.settled(0.9)


def test_decision_without_move_items_is_the_winning_candidate():
    w = np.zeros((4, 4))
    w[2, :] = 1.0
    w[2, 2] = 0.0
    assert decision(w, None, [0, 1, 2]) == 2
    assert decision(np.zeros((4, 4)), None, [0, 1, 2]) is None


def test_move_items_are_the_shown_positions_of_the_centre_and_trials():
    opt = RankSGD(np.zeros(16), m=8, k=3, seed=0)
    opt.ask()
    opt.tell([0, 1, 2])
    opt.ask()
    items = opt.move_items()
    assert items is not None and len(items) >= 2 and len(set(items)) == len(items)
    centre = opt.ask().points[items[0]]
    assert np.allclose(centre, opt.x)


def test_quorum_settings():
    assert CampaignSettings.from_stored({"prompt": "x"}).quorum == "fixed"
    assert first_quorum(CampaignFields(annotators_per_round=5)) == 5
    adaptive = CampaignFields(quorum="adaptive", min_annotators_per_round=2, annotators_per_round=5)
    assert first_quorum(adaptive) == 2
    with pytest.raises(ValueError, match="must not exceed"):
        CampaignFields(quorum="adaptive", min_annotators_per_round=6, annotators_per_round=5)


def test_a_prior_asks_more_than_two_agreeing_rankings():
    """The prior (a random ranking, Gamma(prior)-weighted in every draw) keeps two agreeing
    rankings from settling alone; enough agreeing ones still settle."""
    two = [("a", [1, 0, 2]), ("b", [1, 2, 0])]
    assert settle(two, weights={}).settled(0.9)  # the plain bootstrap: at the minimum
    with_prior = settlement_with_prior(two, prior=1.0)
    assert with_prior.decision == 1 and not with_prior.settled(0.9)
    many = [(f"x{i}", [1, 0, 2]) for i in range(6)]
    assert settlement_with_prior(many, prior=1.0).settled(0.9)
    assert settlement_with_prior(many, prior=1.0).confidence > with_prior.confidence


@pytest.mark.parametrize("feed", ["pairwise", "order"])
def test_the_prior_is_invariant_to_annotator_and_item_order(feed):
    rankings = [("a", [1, 0, 2]), ("b", [5, 2, 0]), ("c", [1, 4, 7])]
    first = settlement_with_prior(rankings, prior=1.0, feed=feed)
    again = settlement_with_prior(rankings[::-1], prior=1.0, feed=feed)
    assert again == first
    relabel = [*np.random.default_rng(1).permutation(N_ITEMS - 1).tolist(), ATTENTION]
    moved = [(a, [relabel[i] for i in order]) for a, order in rankings]
    relabelled = settlement_with_prior(
        moved, prior=1.0, feed=feed, move_items=[relabel[i] for i in MOVE]
    )
    assert relabelled.decision == relabel[first.decision]
    # Exact but for items whose evidence ties exactly (their random ranks may swap).
    assert relabelled.confidence == pytest.approx(first.confidence, abs=0.05)


def settlement_with_prior(rankings, *, prior, feed="pairwise", move_items=MOVE):
    return settlement(
        rankings,
        N_ITEMS,
        weights={},
        move_items=move_items,
        candidates=[i for i in range(N_ITEMS) if i != ATTENTION],
        feed=feed,
        seed=7,
        prior=prior,
    )
