"""The visible floor follows the crowd: wider when people cannot tell the candidates apart,
narrower when they agree easily, always within the visibility band, recorded in the state."""

from __future__ import annotations

import numpy as np
import pytest

from rankloop.core.consensus import aggregate
from rankloop.core.contracts import ConsensusFeed
from rankloop.core.optimizer import RankSGD, dumps_state, loads_state
from rankloop.core.optimizer import visibility as vis
from rankloop.core.round_step import candidate_feed, shown_items, tell
from rankloop.simulation.perceptual_crowd import make_perceptual_crowd

EFFECT = 0.01  # RMS pixel change per unit of latent distance
LOW, HIGH = 0.03, 0.12  # the default band


def test_chance_corrected_agreement_is_the_mean_pairwise_spearman():
    assert vis.chance_corrected(1.0, 3) == pytest.approx(1.0)
    assert vis.chance_corrected(1 / 3, 3) == pytest.approx(0.0)  # three rankings at random
    assert vis.chance_corrected(0.0, 2) == pytest.approx(-1.0)  # two reversed rankings
    assert vis.chance_corrected(0.9, 1) is None and vis.chance_corrected(None, 3) is None
    assert vis.distinguishable(1.0, 3) is True
    assert vis.distinguishable(1 / 3, 3) is False
    assert vis.distinguishable(1.0, 1) is None


def test_next_floor_widens_narrows_and_stays_in_the_band():
    assert vis.next_floor(0.04, 0.0, LOW, HIGH) == pytest.approx(0.04 * vis.WIDEN)
    assert vis.next_floor(0.04, 0.9, LOW, HIGH) == pytest.approx(0.04 * vis.NARROW)
    assert vis.next_floor(0.04, 0.3, LOW, HIGH) == pytest.approx(0.04)
    assert vis.next_floor(0.04, None, LOW, HIGH) == pytest.approx(0.04)
    assert vis.next_floor(0.11, -0.5, LOW, HIGH) == HIGH
    assert vis.next_floor(0.031, 1.0, LOW, HIGH) == LOW


def _campaign(seen_between: float, rounds: int, follow: bool = True) -> list[RankSGD]:
    """A cppn-sized optimizer whose rounds three perceptual people rank, every pair of
    candidates ``seen_between`` ΔE00 apart; returns the optimizer after each round."""
    rng = np.random.default_rng(0)
    optimizer = RankSGD(rng.standard_normal(16), m=8, k=3, seed=1, follow_agreement=follow)
    crowd = make_perceptual_crowd([0.3, 0.3, 0.3], seed=2, k=3)
    target = np.full(16, 0.5)
    states = []
    for _ in range(rounds):
        proposal = optimizer.ask()
        optimizer.note_pixel_effect(EFFECT)
        values = np.sum((proposal.points - target) ** 2, axis=1)
        seen = np.full((8, 8), seen_between)
        np.fill_diagonal(seen, 0.0)
        answers = crowd.rank(values, proposal.round, seen=seen)
        consensus = aggregate(answers, 8, method="auto")
        feed = candidate_feed(
            consensus.order, consensus.pairwise, shown_items(8, False), "pairwise",
            consensus.agreement, len(answers),
        )  # fmt: skip
        tell(optimizer, feed, 8)
        states.append(RankSGD.from_state_dict(optimizer.state_dict()))
    return states


def test_a_crowd_that_cannot_tell_candidates_apart_widens_the_floor_step_and_radius():
    blind = _campaign(seen_between=0.0, rounds=12)
    floors = [s.stats["visible_floor"] for s in blind]
    assert floors[-1] > 2 * LOW and max(floors) <= HIGH
    agreements = [s.stats["crowd_agreement"] for s in blind]
    assert np.mean(agreements) < vis.INDISTINCT_BELOW
    # Perturbations and steps are at least the floor's latent distance.
    last = blind[-1]
    assert last.stats["radius"] >= floors[-1] / EFFECT * (1 - 1e-9)
    assert last.stats["step"] >= floors[-1] / EFFECT * (1 - 1e-9)
    fixed = _campaign(seen_between=0.0, rounds=12, follow=False)[-1]
    assert fixed.stats["visible_floor"] == LOW
    assert last.stats["radius"] > 2 * fixed.stats["radius"]


def test_a_crowd_that_always_agrees_narrows_the_floor_back_to_the_band_edge():
    optimizer = RankSGD(np.ones(16), m=8, k=3, seed=1)
    optimizer.note_pixel_effect(EFFECT)

    def round_(agreement: float) -> float:
        proposal = optimizer.ask()
        order = [int(i) for i in np.argsort(np.sum(proposal.points**2, axis=1))[:3]]
        tell(optimizer, ConsensusFeed(order=order, agreement=agreement, raters=3), 8)
        return optimizer.stats["visible_floor"]

    widened = [round_(1 / 3) for _ in range(10)]  # agreement at chance: nobody told them apart
    assert widened[-1] == pytest.approx(HIGH)
    floors = [round_(1.0) for _ in range(12)]  # three identical rankings: W = 1
    assert floors[0] == pytest.approx(HIGH * vis.NARROW)
    assert np.all(np.diff(floors) <= 0) and floors[-1] == pytest.approx(LOW)
    assert optimizer.stats["crowd_agreement"] == pytest.approx(1.0)


def test_the_floor_survives_a_saved_state_and_a_version_4_state_keeps_a_fixed_floor():
    blind = _campaign(seen_between=0.0, rounds=4)[-1]
    state = loads_state(dumps_state(blind.state_dict()))
    assert state["version"] == 5 and state["visible_floor"] == blind._state.visible_floor
    assert RankSGD.from_state_dict(state)._state.floor() == blind._state.floor()
    old = {**blind.state_dict(), "version": 4}
    for key in ("visible_floor", "noted_agreement"):
        old.pop(key)
    old["options"] = {k: v for k, v in old["options"].items() if k != "follow_agreement"}
    restored = RankSGD.from_state_dict(old)
    assert restored.state_dict()["options"]["follow_agreement"] is False
    restored.ask()
    restored.note_agreement(1 / 3, 3)  # chance: the rule would widen, a version 4 state does not
    restored.tell([0, 1, 2])
    assert restored.stats["visible_floor"] == LOW
