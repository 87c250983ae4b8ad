"""Quorum rules compared at equal rankings spent, and paired intervals for the targets.

Every rule of ``bench campaign --quorum`` steers the same campaigns (seed ``s``: the same start
point, the same crowd's answers, the same arrival order), so two rules are compared seed by
seed: the difference of their improvements has far less spread than either, and a percentile
bootstrap over the seeds gives its interval. At 12-20 seeds the medians of two rules move by
several hundredths from one seed set to the next, so a target is read from the medians (as the
issue states it) and said to be *within noise* when the paired interval holds zero.

"At equal rankings spent": a campaign's improvement once it has spent ``S`` rankings, linear
between the rounds where its running total crosses ``S`` (before round 1 nothing improved);
a campaign that spent fewer than ``S`` in all its rounds counts at its last round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BOOTSTRAP = 4000  # resamples of the seeds
SPENDS = (20, 30, 40, 50)  # rankings at which the rules are compared


def at_spent(improvement: Sequence[float], rankings: Sequence[int], spend: float) -> float:
    """One campaign's improvement once it has spent ``spend`` rankings (see the docstring)."""
    total = np.concatenate([[0.0], np.cumsum(rankings, dtype=float)])
    values = np.concatenate([[0.0], np.asarray(improvement, dtype=float)])
    return float(np.interp(spend, total, values))


def equal_spend_rows(
    curves: dict[str, dict[str, Any]], spends: Sequence[float] = SPENDS
) -> list[dict[str, Any]]:
    """Per ``objective/rule`` entry of ``curves`` (``improvement`` and ``rankings``, seeds x
    rounds): the median improvement at each spend."""
    rows = []
    for key, entry in curves.items():
        objective, rule = key.split("/", 1)
        row: dict[str, Any] = {"objective": objective, "quorum": rule}
        for spend in spends:
            values = [
                at_spent(i, r, spend)
                for i, r in zip(entry["improvement"], entry["rankings"], strict=True)
            ]
            row[f"@{spend:g} rankings"] = float(np.median(values))
        rows.append(row)
    return rows


def paired_interval(
    a: Sequence[float], b: Sequence[float], seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """The median of the seed-by-seed differences ``a - b`` and its percentile bootstrap
    interval over the seeds."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    resampled = np.median(rng.choice(diff, (BOOTSTRAP, len(diff))), axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return float(np.median(diff)), float(low), float(high)


__all__ = ["SPENDS", "at_spent", "equal_spend_rows", "paired_interval"]
