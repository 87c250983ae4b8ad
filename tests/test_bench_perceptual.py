"""The benchmarks' perceptual part: the same campaign under each crowd, with what it saw."""

from __future__ import annotations

import numpy as np
import pytest

from rankloop.bench.campaign import make_campaign_crowd
from rankloop.bench.perceptual import CROWDS, campaign_figures, consensus_rows, verdict_lines


def _crowd(seed: int):
    return make_campaign_crowd(seed, False)


def test_a_campaign_under_each_crowd_reports_gains_pairs_above_and_the_floor():
    for label in CROWDS:
        figures = campaign_figures("colour", label, 1, 3, _crowd)
        assert len(figures["gain"]) == 3 and all(g <= 1.0 for g in figures["gain"])
        assert all(f >= 0.03 - 1e-12 for f in figures["floor"])
        above = np.array(figures["pairs_above"])
        if label == "pixel-exact":
            assert np.all(np.isnan(above))  # it sees no tiles
        else:
            assert np.all((above >= 0) & (above <= 1))
        again = campaign_figures("colour", label, 1, 3, _crowd)  # pure in its seed
        for key, values in figures.items():
            np.testing.assert_array_equal(values, again[key])


@pytest.mark.slow  # 36 rounds of images, each seen by three crowds
def test_consensus_under_the_perceptual_crowd_is_chance_below_the_threshold():
    rows = consensus_rows(1, _crowd)
    by = {(r["setting"], r["method"]): r for r in rows}
    tiny, clear = "RMS 0.005", "RMS 0.06"
    assert by[(tiny, "perceptual phone")]["pairs above"] == 0.0
    assert by[(clear, "perceptual phone")]["pairs above"] > 0.9
    # The pixel-exact crowd sees the invisible differences; people do not.
    assert by[(tiny, "pixel-exact")]["tau mean"] > by[(tiny, "perceptual phone")]["tau mean"] + 0.3


def test_verdict_lines_name_each_target():
    verdict = {
        "phone_over_exact_median": 0.9,
        "gain_target_met": True,
        "phone_campaigns_not_improved": 0,
        "all_improved_met": True,
        "phone_pairs_above_min_round": 0.5,
        "pairs_above_target_met": False,
    }
    (line,) = verdict_lines({"cppn colour": verdict})
    assert "0.90" in line and "met" in line and "missed" in line
