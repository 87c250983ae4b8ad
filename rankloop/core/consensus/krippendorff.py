"""Agreement among annotators' rankings: Krippendorff's alpha with the ordinal metric (Kendall's
W is :func:`rankloop.core.consensus.kendall_w`), and each annotator's agreement with the
consensus.

References
----------
Krippendorff, K. (2011). Computing Krippendorff's alpha-reliability. Annenberg School for
Communication, University of Pennsylvania (the coincidence matrix and the ordinal metric).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau


def krippendorff_alpha_ordinal(units: Sequence[np.ndarray]) -> float | None:
    """Krippendorff's alpha, ordinal metric, from ``units``: one array per unit (an image of a
    round) holding the values (mid-ranks) its annotators gave it; a unit with fewer than two
    values is not pairable and is left out. 1 = perfect agreement, 0 = chance, below 0 =
    systematic disagreement; None when there is nothing to compare (fewer than two pairable
    values, or a single value everywhere).
    """
    pairable = [np.asarray(u, dtype=float) for u in units if len(u) >= 2]
    if not pairable:
        return None
    values = np.unique(np.concatenate(pairable))
    if len(values) < 2:
        return None
    index = {v: i for i, v in enumerate(values)}
    coincidences = np.zeros((len(values), len(values)))
    for unit in pairable:
        counts = np.bincount([index[v] for v in unit], minlength=len(values)).astype(float)
        coincidences += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    totals = coincidences.sum(axis=1)
    n = totals.sum()
    # Ordinal metric: delta(c, k) = (sum of n_g for g from c to k - (n_c + n_k) / 2) ** 2.
    cumulative = np.concatenate([[0.0], np.cumsum(totals)])
    low, high = (
        np.minimum.outer(range(len(values)), range(len(values))),
        np.maximum.outer(range(len(values)), range(len(values))),
    )
    spans = cumulative[high + 1] - cumulative[low]
    delta = (spans - (totals[:, None] + totals[None, :]) / 2) ** 2
    expected = float((np.outer(totals, totals) * delta).sum())
    if expected == 0:
        return None
    return float(1.0 - (n - 1) * float((coincidences * delta).sum()) / expected)


def image_units(ranks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The units of :func:`krippendorff_alpha_ordinal` from one rank vector per annotator over
    the same images: one unit per image, the ranks its annotators gave it."""
    if not ranks:
        return []
    return [np.array([r[c] for r in ranks]) for c in range(len(ranks[0]))]


def tau_with(ranks: np.ndarray, reference: np.ndarray) -> float | None:
    """Kendall's tau-b between an annotator's ranks and the consensus's (None if undefined)."""
    tau = kendalltau(ranks, reference).statistic
    return None if tau is None or not np.isfinite(tau) else float(tau)
