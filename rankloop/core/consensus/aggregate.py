"""The consensus entry point: :func:`aggregate` merges one round's answers into
a :class:`Consensus`.

It parses the answers into pairwise evidence, learns this round's annotator weights
(:mod:`~rankloop.core.consensus.reliability`), applies the chosen rule and measures agreement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.consensus.agreement import kendall_w, mid_ranks
from rankloop.core.consensus.evidence import Ranking, as_item, parse_rankings, weighted_pairwise
from rankloop.core.consensus.kemeny import kemeny_order
from rankloop.core.consensus.plackett_luce import plackett_luce_scores
from rankloop.core.consensus.reliability import AnnotatorReliability, weigh_annotators
from rankloop.core.consensus.rules import copeland_scores, net_wins, order_by
from rankloop.core.consensus.scaled_pl import fit_round
from rankloop.core.errors import InvalidInput

METHODS = (
    "auto",
    "scaled_pl",
    "weighted_kemeny",
    "borda",
    "copeland",
    "plackett_luce",
    "kemeny",
)
#: What "auto" runs: the scaled Plackett–Luce model (measured closest to the known-scale limit).
AUTO_METHOD = "scaled_pl"


@dataclass(frozen=True, eq=False)
class Consensus:
    """One round's consensus.

    Attributes
    ----------
    order : tuple of int
        Every item, best first. Items in ``known_worst`` come last.
    scores : (n,) ndarray
        One score per item, higher = better (method-specific scale: the fitted utility for
        ``"scaled_pl"`` and ``"auto"``, net wins for Borda, Copeland score, PL log-strength,
        ``n - 1 - position`` for the Kemeny rules).
    weights : dict
        annotator_id -> weight used: the learnt scale for ``"scaled_pl"`` and ``"auto"``
        (``1 / temperature``; about 0 for a spammer, negative for an adversary), log-odds of
        pairwise accuracy for ``"weighted_kemeny"``, 1.0 for the unweighted methods.
    agreement : float
        Kendall's W (tie-corrected) of the raw answers, in [0, 1]: 1 = all the same, about 0 =
        unrelated or opposed. For partial answers, shown-but-unranked items share the mid-rank
        of the places below the ranked ones, and items an annotator was not shown get the
        neutral mid-rank, so a top-k answer counts as a ranking with a tie at the bottom.
        Attention items (``known_worst``) are left out: W measures agreement on the real items.
    pairwise : (n, n) ndarray
        ``pairwise[a, b] >= 0``: weighted evidence that ``a`` beats ``b`` (for the weighted rules, a
        negatively weighted annotator's vote counts, with the absolute weight, the other way).
        This is what ``RankSGD.tell(preferences=...)`` takes.
    method : str
        The rule used.
    """

    order: tuple[int, ...]
    scores: np.ndarray
    weights: dict
    agreement: float
    pairwise: np.ndarray
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (weights keyed by ``str(annotator_id)``)."""
        return {
            "order": list(self.order),
            "scores": [float(s) for s in self.scores],
            "weights": {str(k): float(v) for k, v in self.weights.items()},
            "agreement": float(self.agreement),
            "pairwise": self.pairwise.tolist(),
            "method": self.method,
        }


def aggregate(
    rankings: Sequence[Ranking],
    n_items: int,
    method: str = "auto",
    reliability: AnnotatorReliability | None = None,
    known_worst: Iterable[int] | None = None,
) -> Consensus:
    """Merge several annotators' partial rankings of one round's items into one consensus.

    Parameters
    ----------
    rankings : sequence of (annotator_id, order) or (annotator_id, order, shown)
        ``order`` is best first; an element may be a list/tuple of items the annotator declared
        tied. A prefix of the items is a top-k answer: the ranked items beat the unranked ones,
        nothing more. ``shown`` (optional) lists the items that annotator saw; default all.
        Annotator ids are strings or integers, one answer each.
    n_items : int
        Number of items in the round (indices 0..n_items-1).
    method : {"auto", "scaled_pl", "weighted_kemeny", "borda", "copeland", "plackett_luce", \
"kemeny"}
        See :mod:`rankloop.core.consensus`. ``"auto"`` (``"scaled_pl"``) and
        ``"weighted_kemeny"`` weight annotators by what ``reliability`` learnt.
    reliability : AnnotatorReliability, optional
        The campaign's record; updated in place with this round's evidence (for every method:
        the evidence does not depend on the rule). Without one, ``"auto"`` uses a fresh record
        and learns only from this round.
    known_worst : iterable of int, optional
        Attention items (a degraded copy of the best image) that belong at the bottom of any
        honest ranking: evidence about each annotator, and placed last in ``order``.

    Returns
    -------
    Consensus

    Raises
    ------
    InvalidInput
        Malformed rankings (see :func:`parse_ranking`), ``n_items < 1``, an unknown method, an
        annotator answering twice, a ``known_worst`` item out of range.
    ConvergenceError
        A Plackett–Luce fit or the Kemeny program did not converge.

    Notes
    -----
    With one annotator and no contrary history every method returns that annotator's order
    (shown-but-unranked items follow in index order).
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown consensus method {method!r}; use one of {', '.join(METHODS)}")
    answers = parse_rankings(rankings, n_items)
    n_items = int(n_items)
    worst = frozenset(as_item(i, n_items, "known_worst") for i in (known_worst or ()))
    if reliability is None:
        reliability = AnnotatorReliability()

    requested, method = method, (AUTO_METHOD if method == "auto" else method)
    weights, evidence = weigh_annotators(answers, reliability, worst, n_items)
    for answer, round_evidence in zip(answers, evidence, strict=True):
        reliability.record(answer.annotator, round_evidence)
    if method == "scaled_pl":
        beliefs = np.array([reliability.scale(a.annotator) for a in answers])
        fit = fit_round(answers, n_items, beliefs[:, 0], beliefs[:, 1], worst)
        for answer, mean, precision in zip(
            answers, fit.scale_mean, fit.scale_precision, strict=True
        ):
            reliability.record_scale(answer.annotator, mean, precision)
        if reliability.orient_scales():  # the campaign was upside down: refit this round
            beliefs = np.array([reliability.scale(a.annotator) for a in answers])
            fit = fit_round(
                answers, n_items, beliefs[:, 0], beliefs[:, 1], worst, fixed_scales=beliefs[:, 0]
            )
    if method == "scaled_pl":
        weights = [float(s) for s in fit.scale_mean]
    elif method != "weighted_kemeny":
        weights = [1.0] * len(answers)
    pairwise = weighted_pairwise(answers, weights)
    net = net_wins(pairwise)
    if method == "scaled_pl":
        scores = fit.utilities
        order = order_by(scores, net)
    elif method == "borda":
        scores = net
        order = order_by(scores)
    elif method == "copeland":
        scores = copeland_scores(pairwise)
        order = order_by(scores, net)
    elif method == "plackett_luce":
        scores = plackett_luce_scores(answers, n_items)
        order = order_by(scores, net)
    else:  # kemeny and weighted_kemeny
        order = kemeny_order(pairwise)
    if worst:
        order = [i for i in order if i not in worst] + [i for i in order if i in worst]
    if method in ("kemeny", "weighted_kemeny"):
        scores = np.empty(n_items)
        scores[order] = np.arange(n_items - 1, -1, -1, dtype=float)

    real_items = [i for i in range(n_items) if i not in worst]  # attention items are not opinions
    agreement = kendall_w([mid_ranks(a, real_items or list(range(n_items))) for a in answers])
    scores = np.asarray(scores, dtype=float)
    scores.setflags(write=False)
    pairwise.setflags(write=False)
    return Consensus(
        order=tuple(order),
        scores=scores,
        weights={a.annotator: float(w) for a, w in zip(answers, weights, strict=True)},
        agreement=agreement,
        pairwise=pairwise,
        method=requested,
    )
