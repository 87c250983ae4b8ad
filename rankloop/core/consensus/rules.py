"""Positional and majority rules on pairwise evidence: Borda and Copeland.

``"borda"`` ranks by net pairwise wins summed over annotators (for full rankings, affine to the
Borda count); ``"copeland"`` by pairwise majority wins minus losses. Both break ties by further
scores, then by item index, so the order is always deterministic.
"""

from __future__ import annotations

import numpy as np


def order_by(primary: np.ndarray, *tiebreaks: np.ndarray) -> list[int]:
    """Indices by descending ``primary``, then descending tie-breaks, then ascending index."""
    n = len(primary)
    keys = [np.arange(n)]
    keys.extend(-np.round(np.asarray(t, dtype=float), 9) for t in reversed(tiebreaks))
    keys.append(-np.round(np.asarray(primary, dtype=float), 9))
    return [int(i) for i in np.lexsort(keys)]


def net_wins(pairwise: np.ndarray) -> np.ndarray:
    return pairwise.sum(axis=1) - pairwise.sum(axis=0)


def copeland_scores(pairwise: np.ndarray) -> np.ndarray:
    margin = pairwise - pairwise.T
    tolerance = 1e-9 * max(1.0, float(np.abs(pairwise).max(initial=0.0)))
    return (margin > tolerance).sum(axis=1) - (margin < -tolerance).sum(axis=1).astype(float)
