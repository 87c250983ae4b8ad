"""Pairwise evidence: parsing best-first rankings (partial, top-k, ties) into pairwise matrices.

Every answer is broken into pairs (the rank-breaking view of Chen et al. 2013 and Maystre &
Grossglauser 2015): earlier tie groups beat later ones, ranked items beat the shown items left
unranked (a top-k answer), tied items and unranked items are not compared among themselves, and
items an annotator was not shown are not compared at all. Every rule of the package works on
this evidence.

References
----------
Chen, X., Bennett, P. N., Collins-Thompson, K. & Horvitz, E. (2013). Pairwise ranking
aggregation in a crowdsourced setting (CrowdBT). *WSDM*.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.errors import InvalidInput

# An order element: one item, or a group of declared ties.
OrderElement = int | Sequence[int]
Ranking = tuple[Hashable, Sequence[OrderElement]] | tuple[Hashable, Sequence[OrderElement], Any]


def as_item(value: Any, n_items: int, annotator: Hashable) -> int:
    """``value`` as an item index in ``0..n_items - 1``, or :class:`InvalidInput`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInput(
            f"annotator {annotator!r}: ranking element {value!r} is not an item index; "
            "use integers, or a list of integers for tied items"
        )
    item = int(value)
    if not 0 <= item < n_items:
        raise InvalidInput(
            f"annotator {annotator!r}: item {item} out of range; items are 0..{n_items - 1}"
        )
    return item


def parse_ranking(
    order: Sequence[OrderElement],
    n_items: int,
    annotator: Hashable = None,
    shown: Iterable[int] | None = None,
) -> tuple[list[list[int]], frozenset[int]]:
    """Validate one best-first ranking and return its tie groups and the items it covers.

    Parameters
    ----------
    order : sequence
        Best first. Each element is an item index, or a list/tuple of item indices the annotator
        declared tied.
    n_items : int
        Number of items in the round.
    annotator : hashable, optional
        Only used in error messages.
    shown : iterable of int, optional
        The items this annotator was shown (default: all). Ranked items beat the shown items
        left unranked (a top-k answer); items not shown are not compared at all.

    Returns
    -------
    groups : list of list of int
        Tie groups, best first (a singleton group for an untied item).
    shown : frozenset of int

    Raises
    ------
    InvalidInput
        Empty ranking, item out of range, repeated item, empty or nested tie group, an item
        outside ``shown``.
    """
    if isinstance(order, str | bytes) or not isinstance(order, Sequence | np.ndarray):
        raise InvalidInput(
            f"annotator {annotator!r}: a ranking must be a list of item indices, got {order!r}"
        )
    if len(order) == 0:
        raise InvalidInput(f"annotator {annotator!r}: empty ranking; leave the annotator out")
    if shown is None:
        shown_set = frozenset(range(n_items))
    else:
        shown_set = frozenset(as_item(i, n_items, annotator) for i in shown)
    groups: list[list[int]] = []
    seen: set[int] = set()
    for element in order:
        if isinstance(element, list | tuple | np.ndarray):
            if len(element) == 0:
                raise InvalidInput(f"annotator {annotator!r}: empty tie group in {order!r}")
            if any(isinstance(e, list | tuple | np.ndarray) for e in element):
                raise InvalidInput(
                    f"annotator {annotator!r}: tie groups cannot be nested: {element!r}; "
                    "flatten the group"
                )
            group = [as_item(e, n_items, annotator) for e in element]
        else:
            group = [as_item(element, n_items, annotator)]
        for item in group:
            if item in seen:
                raise InvalidInput(
                    f"annotator {annotator!r}: item {item} appears twice in {order!r}"
                )
            if item not in shown_set:
                raise InvalidInput(
                    f"annotator {annotator!r}: item {item} is ranked but was not shown"
                )
            seen.add(item)
        groups.append(group)
    return groups, shown_set


def pairwise_matrix(groups: Sequence[Sequence[int]], shown: Iterable[int], n_items: int):
    """Pairwise evidence of one ranking: ``P[a, b] = 1`` when it places ``a`` above ``b``.

    Earlier groups beat later groups, every ranked item beats every shown item left unranked,
    tied items and unranked items are not compared among themselves.
    """
    matrix = np.zeros((n_items, n_items))
    placed: list[int] = []
    for group in groups:
        if placed:
            matrix[np.ix_(placed, group)] = 1.0
        placed.extend(group)
    unranked = sorted(set(shown) - set(placed))
    if unranked:
        matrix[np.ix_(placed, unranked)] = 1.0
    return matrix


@dataclass(frozen=True)
class Answer:
    """One annotator's validated answer and its pairwise evidence."""

    annotator: Hashable
    key: str
    groups: list[list[int]]
    shown: frozenset[int]
    pairs: np.ndarray  # (n, n) 0/1, pairs[a, b] = 1: a above b


def parse_rankings(rankings: Sequence[Any], n_items: int) -> list[Answer]:
    """Validate a round's ``(annotator_id, order[, shown])`` entries (see :func:`parse_ranking`)."""
    if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
        raise InvalidInput(f"n_items must be a positive integer, got {n_items!r}")
    if isinstance(rankings, str | bytes | Mapping) or not isinstance(rankings, Sequence):
        raise InvalidInput(
            "rankings must be a list of (annotator_id, best-first order) pairs, "
            f"got {type(rankings).__name__}"
        )
    if len(rankings) == 0:
        raise InvalidInput("no rankings to aggregate; wait for at least one annotator")
    answers: list[Answer] = []
    keys: set[str] = set()
    for entry in rankings:
        if not isinstance(entry, Sequence) or len(entry) not in (2, 3):
            raise InvalidInput(
                f"each ranking must be (annotator_id, order) or (annotator_id, order, shown), "
                f"got {entry!r}"
            )
        annotator, order = entry[0], entry[1]
        shown = entry[2] if len(entry) == 3 else None
        key = annotator_key(annotator)
        if key in keys:
            raise InvalidInput(
                f"annotator {annotator!r} answered twice in one round; keep one ranking each"
            )
        keys.add(key)
        groups, shown_set = parse_ranking(order, int(n_items), annotator, shown)
        answers.append(
            Answer(annotator, key, groups, shown_set, pairwise_matrix(groups, shown_set, n_items))
        )
    return answers


def annotator_key(annotator: Hashable) -> str:
    """The id an annotator's evidence is kept under (a JSON key), or :class:`InvalidInput`."""
    if isinstance(annotator, bool) or not isinstance(annotator, str | int | np.integer):
        raise InvalidInput(
            f"annotator ids must be strings or integers (they are stored as JSON keys), "
            f"got {annotator!r}"
        )
    return str(annotator)


def signed_votes(answers: Sequence[Answer]) -> np.ndarray:
    """(annotators, n, n) votes: +1 a above b, -1 b above a, 0 no statement."""
    stacked = np.stack([a.pairs for a in answers])
    return stacked - np.transpose(stacked, (0, 2, 1))


def weighted_pairwise(answers: Sequence[Answer], weights: Sequence[float]) -> np.ndarray:
    """Summed pairwise evidence; a negative weight reads that annotator's votes reversed."""
    total = np.zeros_like(answers[0].pairs)
    for answer, w in zip(answers, weights, strict=True):
        total += w * answer.pairs if w >= 0 else -w * answer.pairs.T
    return total
