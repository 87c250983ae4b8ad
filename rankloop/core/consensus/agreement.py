"""Agreement among annotators: Kendall's coefficient of concordance W, with ties.

References
----------
Kendall, M. G. & Babington Smith, B. (1939). The problem of m rankings. *Ann. Math. Stat.* 10(3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rankloop.core.consensus.evidence import Answer


def kendall_w(answers_or_ranks: Sequence[np.ndarray]) -> float:
    """Kendall's coefficient of concordance W, with the tie correction, from rank vectors.

    Parameters
    ----------
    answers_or_ranks : sequence of (n,) arrays
        One vector of (mid-)ranks per annotator, 1 = best.

    Returns
    -------
    float
        W in [0, 1]: 1 when all annotators give the same ranks, about 0 when they are unrelated.
        Reversed rankings pull it toward 0 (W does not go negative). One annotator gives 1.
    """
    ranks = np.asarray(answers_or_ranks, dtype=float)
    raters, n = ranks.shape
    if n < 2:
        return 1.0
    totals = ranks.sum(axis=0)
    spread = float(((totals - totals.mean()) ** 2).sum())
    tie_term = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        tie_term += float((counts**3 - counts).sum())
    denominator = raters**2 * (n**3 - n) - raters * tie_term
    if denominator <= 0:  # every annotator tied every item: they agree on "all equal"
        return 1.0
    return float(np.clip(12.0 * spread / denominator, 0.0, 1.0))


def mid_ranks(answer: Answer, items: Sequence[int]) -> np.ndarray:
    """Ranks 1..len(items) of ``items`` with ties at their mid-rank, other items ignored.

    Shown-but-unranked items share the mid-rank of the places left below the ranked ones;
    items not shown get the neutral (n + 1) / 2.
    """
    column = {item: c for c, item in enumerate(items)}
    n = len(items)
    ranks = np.full(n, (n + 1) / 2.0)
    position = 0
    for group in answer.groups:
        kept = [column[i] for i in group if i in column]
        if kept:
            ranks[kept] = position + (len(kept) + 1) / 2.0
            position += len(kept)
    ranked = {i for g in answer.groups for i in g}
    rest = [column[i] for i in sorted(answer.shown - ranked) if i in column]
    if rest:
        ranks[rest] = position + (len(rest) + 1) / 2.0
    return ranks
