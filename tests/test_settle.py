"""The adaptive quorum's settle rule (rankloop.core.settle): pure, no services."""

from __future__ import annotations

import numpy as np
import pytest

from rankloop.core.campaign_settings import CampaignFields, CampaignSettings, first_quorum
from rankloop.core.consensus.reliability import AnnotatorReliability
from rankloop.core.optimizer import RankSGD
from rankloop.core.settle import (
    CAMPAIGN_PRIOR,
    campaign_prior,
    decision,
    settle_round,
    settlement,
)

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


# A round with nothing to move to (round 0: no direction, no trial) feeds only the direction,
# led by the winning candidate: that is the decision it settles.
NO_MOVE = [3]


def test_a_round_with_nothing_to_move_to_settles_its_winner():
    agreeing = settle([("a", [1, 0, 2]), ("b", [1, 2, 0])], move_items=NO_MOVE)
    assert agreeing.decision == 1 and agreeing.settled(0.9)
    split = settle([("a", [1, 0, 2]), ("b", [5, 2, 0])], move_items=NO_MOVE)
    assert not split.settled(0.9)
    assert settle([("a", [1, 0, 2]), ("b", [5, 2, 0])], move_items=None) == split


def test_a_split_round_with_nothing_to_move_to_asks_up_to_the_cap():
    """The annotators split over which of two candidates wins: never settled, so the quorum
    runs to its cap."""
    rankings = [(f"x{i}", [1, 5, 2] if i % 2 == 0 else [5, 1, 2]) for i in range(5)]
    for n in range(2, len(rankings) + 1):
        assert not settle(rankings[:n], move_items=NO_MOVE).settled(0.9)


@pytest.mark.parametrize("feed", ["pairwise", "order"])
def test_nothing_to_move_to_is_invariant_to_annotator_and_item_order(feed):
    rankings = [("a", [1, 0, 2]), ("b", [5, 2, 0]), ("c", [1, 4, 7])]
    weights = {"a": 1.0, "b": 0.7, "c": 1.3}
    first = settle(rankings, move_items=NO_MOVE, feed=feed, weights=weights)
    assert settle(rankings[::-1], move_items=NO_MOVE, feed=feed, weights=weights) == first
    relabel = [*np.random.default_rng(2).permutation(N_ITEMS - 1).tolist(), ATTENTION]
    moved = [(a, [relabel[i] for i in order]) for a, order in rankings]
    again = settle(moved, move_items=[relabel[3]], feed=feed, weights=weights)
    assert again.confidence == first.confidence
    assert again.decision == relabel[first.decision]


def test_a_stay_settles_at_the_lower_bar_a_wrong_stay_s_lower_cost_allows():
    # Two say the point stays, one moves it: the stay is modal but short of 0.9.
    rankings = [("a", [3, 0, 2]), ("b", [3, 2, 0]), ("c", [1, 3, 0])]
    weights = {"a": 1.0, "b": 1.0, "c": 1.0}
    candidates = [i for i in range(N_ITEMS) if i != ATTENTION]
    common = dict(weights=weights, move_items=MOVE, candidates=candidates, seed=7)
    plain = settlement(rankings, N_ITEMS, **common)
    cheap = settlement(rankings, N_ITEMS, move_cost=3.0, **common)
    assert plain.stays and cheap.stays and plain.confidence == cheap.confidence
    assert 0.7 <= plain.confidence < 0.9
    assert not plain.settled(0.9) and cheap.settled(0.9)
    # A move is held to the full confidence whatever the cost.
    mover = [("a", [1, 0, 2]), ("b", [1, 2, 0]), ("c", [3, 1, 0])]
    moved = settlement(mover, N_ITEMS, move_cost=3.0, **common)
    assert not moved.stays
    assert moved.settled(0.9) == (moved.confidence >= 0.9)


def reliability_record(agree: float, disagree: float) -> dict:
    return {
        "version": 2,
        "prior_agree": 1.0,
        "prior_disagree": 1.0,
        "prior_discount": 1.0,
        "annotators": {
            name: {
                "agree": agree,
                "disagree": disagree,
                "checks_passed": 0.0,
                "checks_failed": 0.0,
                "rounds": 3,
            }
            for name in "ab"
        },
        "seeded": {},
        "scales": {},
    }


def test_the_campaign_prior_is_the_odds_of_the_crowd_s_disagreement():
    assert campaign_prior(None) == 0.0
    assert campaign_prior(AnnotatorReliability.from_dict(reliability_record(0.0, 0.0))) == 0.0
    assert campaign_prior(AnnotatorReliability.from_dict(reliability_record(30.0, 0.0))) == 0.0
    assert campaign_prior(
        AnnotatorReliability.from_dict(reliability_record(30.0, 10.0))
    ) == pytest.approx(1 / 3)


def test_a_unanimous_crowd_closes_at_the_minimum_under_the_campaign_prior():
    two = [("a", [1, 0, 2]), ("b", [1, 2, 0])]
    for record in (None, reliability_record(30.0, 0.0)):
        result = settle_round(
            two, N_ITEMS, method="auto", reliability=record, known_worst=[ATTENTION],
            failed_check=(), move_items=MOVE, feed="pairwise", seed=7, prior=CAMPAIGN_PRIOR,
        )  # fmt: skip
        assert result.decision == 1 and result.settled(0.9)
    noisy = settle_round(
        two, N_ITEMS, method="auto", reliability=reliability_record(10.0, 10.0),
        known_worst=[ATTENTION], failed_check=(), move_items=MOVE, feed="pairwise", seed=7,
        prior=CAMPAIGN_PRIOR,
    )  # fmt: skip
    assert noisy.decision == 1 and not noisy.settled(0.9)
