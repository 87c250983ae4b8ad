"""How one ranking becomes pairwise preferences (the Pick-a-Pic v2 rows of the pairs export).

The rule, applied to each annotator's ranking (the unit is the answer, not the consensus):

- only candidates make pairs: the attention image is a deliberately degraded copy of the
  current best, so "anything beats it" says nothing about the prompt;
- every two ranked candidates in different places make a pair labelled 1/0 (the better one 1);
- two candidates tied in one group make a pair labelled 0.5/0.5;
- with top-k, every ranked candidate beats every candidate left unranked (1/0); two unranked
  candidates make no pair;
- ``image_0`` is the one shown earlier in the round (lower position), so the label, not the
  column, says which is better: a training script cannot learn "the left one wins".

A full ranking of m candidates gives m(m-1)/2 pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

# Where a pair came from, kept as a column so that a training run can filter on it.
RANKED, TIE, OVER_UNRANKED = "ranked", "tie", "ranked_over_unranked"


class Pair(NamedTuple):
    first: int  # position of image_0 (the lower position)
    second: int  # position of image_1
    label_0: float  # 1.0, 0.0 or 0.5
    source: str  # RANKED, TIE or OVER_UNRANKED


def groups(order: Sequence[int | Sequence[int]]) -> list[list[int]]:
    """A stored order (positions best first; a list is a tied group) as groups, best first."""
    return [[int(p) for p in e] if isinstance(e, Sequence) else [int(e)] for e in order]


def ranking_pairs(
    order: Sequence[int | Sequence[int]], candidates: Sequence[int]
) -> Iterator[Pair]:
    """The pairs of one ranking, restricted to ``candidates`` (positions), by the rule above."""
    allowed = set(candidates)
    ranked = [[p for p in group if p in allowed] for group in groups(order)]
    ranked = [g for g in ranked if g]
    seen = {p for g in ranked for p in g}
    unranked = [p for p in candidates if p not in seen]
    for i, group in enumerate(ranked):
        for a_index, a in enumerate(group):
            for b in group[a_index + 1 :]:
                yield _pair(a, b, 0.5, TIE)
            for worse in ranked[i + 1 :]:
                for b in worse:
                    yield _pair(a, b, 1.0, RANKED)
            for b in unranked:
                yield _pair(a, b, 1.0, OVER_UNRANKED)


def _pair(better: int, worse: int, label: float, source: str) -> Pair:
    if better < worse:
        return Pair(better, worse, label, source)
    return Pair(worse, better, 1.0 - label, source)
