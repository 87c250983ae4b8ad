"""How much a round's annotators agreed, for the consensus table and the dataset card: Kendall's
W (the consensus's ``agreement``) and Krippendorff's alpha (ordinal) over the candidates, as
``rankloop report`` computes them (the attention image left out: it would inflate both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rankloop.core.consensus import kendall_w
from rankloop.core.consensus.agreement import mid_ranks
from rankloop.core.consensus.evidence import parse_rankings
from rankloop.core.consensus.krippendorff import image_units, krippendorff_alpha_ordinal
from rankloop.core.contracts import ImageRole
from service.datasets.source import RoundInfo


def candidate_ranks(round_: RoundInfo, answers: Sequence[tuple[str, Any]]) -> list[np.ndarray]:
    """Each answer's mid-ranks of the round's candidates (empty with no answer or candidate)."""
    candidates = [i.position for i in round_.images if i.role == ImageRole.CANDIDATE]
    if not answers or not candidates:
        return []
    parsed = parse_rankings(list(answers), len(round_.images))
    return [mid_ranks(a, candidates) for a in parsed]


def round_alpha(round_: RoundInfo, answers: Sequence[tuple[str, Any]]) -> float | None:
    """Krippendorff's alpha (ordinal) of the round's answers over its candidates."""
    return krippendorff_alpha_ordinal(image_units(candidate_ranks(round_, answers)))


class Pooled:
    """Agreement over many rounds (a split of a dataset): alpha over every round's images
    pooled, and W averaged over rounds weighted by their rankings, as the report does."""

    def __init__(self) -> None:
        self.units: list[np.ndarray] = []
        self.w_sum = 0.0
        self.w_rankings = 0

    def add(self, round_: RoundInfo, answers: Sequence[tuple[str, Any]]) -> None:
        ranks = candidate_ranks(round_, answers)
        self.units.extend(image_units(ranks))
        if len(ranks) > 1:
            self.w_sum += kendall_w(ranks) * len(ranks)
            self.w_rankings += len(ranks)

    @property
    def alpha(self) -> float | None:
        return krippendorff_alpha_ordinal(self.units)

    @property
    def kendall_w(self) -> float | None:
        return self.w_sum / self.w_rankings if self.w_rankings else None
