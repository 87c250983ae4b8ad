"""Plackett–Luce maximum likelihood from partial and tied rankings.

``choix.ilsr_top1`` (iterative Luce spectral ranking) on the exact top-k decomposition of each
answer, with a little ridge regularisation.

References
----------
Maystre, L. & Grossglauser, M. (2015). Fast and accurate inference of Plackett–Luce models
(ILSR, the ``choix`` library). *NeurIPS*.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rankloop.core.consensus.evidence import Answer
from rankloop.core.errors import ConvergenceError

PL_REGULARISATION = 0.01
"""Ridge penalty of the Plackett–Luce fit: keeps it finite when one item wins every comparison."""


def plackett_luce_scores(answers: Sequence[Answer], n_items: int) -> np.ndarray:
    """PL log-strengths from the exact top-k decomposition of each answer.

    A best-first answer over shown items S is a sequence of choices: the first group is chosen
    from all of S, the next from what is left, and so on. A tied group contributes one choice per
    member, each over the items not yet placed minus the other members (no statement among them).
    Unranked shown items only ever appear as losers: top-k says no more than that.
    """
    import choix

    data: list[tuple[int, tuple[int, ...]]] = []
    for answer in answers:
        remaining = set(answer.shown)
        for group in answer.groups:
            remaining -= set(group)
            for winner in group:
                if remaining:
                    data.append((winner, tuple(sorted(remaining))))
    if not data:  # every answer is one all-tied group: no preference at all
        return np.zeros(n_items)
    try:
        return np.asarray(choix.ilsr_top1(n_items, data, alpha=PL_REGULARISATION, max_iter=500))
    except RuntimeError as error:  # choix signals non-convergence with RuntimeError
        raise ConvergenceError(f"Plackett–Luce fit did not converge: {error}") from error
