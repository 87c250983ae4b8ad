"""The weak-tail study of ``bench campaign --tail`` (rankloop.bench.campaign_tail): no services."""

from __future__ import annotations

import numpy as np
import pytest

from rankloop.bench.campaign import objectives
from rankloop.bench.campaign_tail import FEATURES, campaign_features, noisy_crowd, tail_rows


def run(final: float, f0: float, moved_to_worse: int) -> dict:
    return {
        "improvement": [final / 2] * 9 + [final],
        "f0": f0,
        "gain in rounds 1-3": final / 2,
        "rounds moved to worse": moved_to_worse,
        "rounds winner wrong": 3,
        "final step": 1.0,
        "final visible floor": 0.03,
    }


def test_the_tail_is_read_against_the_median_and_the_weak_fifth_against_the_rest():
    runs = [run(0.6, 1.0 + i, 0) for i in range(8)] + [run(0.1, 0.5, 3), run(0.05, 0.4, 2)]
    summary, rows = tail_rows("cppn colour", "today's three", runs)
    assert summary["median@10"] == pytest.approx(0.6)
    assert not summary["met"]  # p10 far below half the median
    assert [row["feature"] for row in rows] == list(FEATURES)
    worse = next(row for row in rows if row["feature"] == "rounds moved to worse")
    assert worse["weak fifth"] == pytest.approx(2.5) and worse["the rest"] == 0.0
    start = next(row for row in rows if row["feature"] == "start f(x0) percentile")
    assert start["weak fifth"] < start["the rest"]  # the weak ones started nearer the taste
    steady = [run(0.5, 1.0 + i, 0) for i in range(10)]
    assert tail_rows("x", "y", steady)[0]["met"]


def test_a_campaign_s_features():
    features = campaign_features(objectives()[0], noisy_crowd(0, 3), 0, 8, 3)
    assert len(features["improvement"]) == 10
    assert 0 <= features["rounds moved to worse"] <= 10
    assert np.isfinite(features["final step"])
