"""Consensus of several annotators' partial rankings of one round's items.

The pure core of the coordinator's "ranking -> consensus" step: numpy, scipy and choix only.

Every annotator's answer is broken into pairwise evidence (a rank-breaking view that handles
top-k answers, rankings of a subset, and declared ties uniformly), then one of five rules turns
the evidence into one best-first order:

``"borda"``
    Net pairwise wins summed over annotators (for full rankings, affine to the Borda count).
``"copeland"``
    Pairwise majority wins minus losses; ties broken by Borda, then by item index.
``"plackett_luce"``
    Plackett–Luce maximum likelihood (``choix.ilsr_top1`` on the exact top-k decomposition, with
    a little ridge regularisation).
``"kemeny"``
    Kemeny–Young: the order that disagrees least with the pairwise evidence; exact by integer
    programming (``scipy.optimize.milp``) for up to ``KEMENY_EXACT_MAX`` items, Borda/Copeland
    starts plus insertion local search beyond.
``"auto"`` (default)
    Reliability-weighted Kemeny: each annotator's pairwise votes are weighted by the log-odds of
    their estimated pairwise accuracy (a one-coin Dawid–Skene model over pairs; Nitzan & Paroush
    1982 show these are the optimal weights for independent voters). Accuracies come from
    :class:`AnnotatorReliability`, which pools, across every round of a campaign, how often each
    annotator agrees with the leave-one-out weighted consensus and how they fare on attention
    checks. Accuracy below 1/2 gives a *negative* weight: an adversary who reverses rankings is
    read backwards, a spammer gets a weight near zero. Within a round the weights and the
    leave-one-out consensus are refined together by a few EM-style passes, so the first round,
    with no history, already discounts a lone dissenter.

References
----------
Dawid, A. P. & Skene, A. M. (1979). Maximum likelihood estimation of observer error-rates using
the EM algorithm. *Applied Statistics* 28(1).
Chen, X., Bennett, P. N., Collins-Thompson, K. & Horvitz, E. (2013). Pairwise ranking
aggregation in a crowdsourced setting (CrowdBT). *WSDM*.
Maystre, L. & Grossglauser, M. (2015). Fast and accurate inference of Plackett–Luce models
(ILSR, the ``choix`` library). *NeurIPS*.
Kendall, M. G. & Babington Smith, B. (1939). The problem of m rankings. *Ann. Math. Stat.* 10(3).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rankloop.core.errors import ConvergenceError, InvalidInput

__all__ = [
    "KEMENY_EXACT_MAX",
    "METHODS",
    "AnnotatorReliability",
    "Consensus",
    "aggregate",
    "kemeny_order",
    "kendall_w",
    "pairwise_matrix",
    "parse_ranking",
]

METHODS = ("auto", "borda", "copeland", "plackett_luce", "kemeny")
KEMENY_EXACT_MAX = 10
"""Largest item count for which Kemeny is solved exactly (integer programming, tens of ms):
m = 8 candidates plus an attention item fit."""

PL_REGULARISATION = 0.01
"""Ridge penalty of the Plackett–Luce fit: keeps it finite when one item wins every comparison."""

EM_PASSES = 8
CHECK_PSEUDO_PAIRS = 4.0
"""How many pairwise observations one attention check is worth (its truth is known, unlike a
consensus pair, but all its pairs share one item and are not independent)."""

ACCURACY_CLIP = (0.02, 0.98)  # keeps log-odds weights within about +-3.9

# An order element: one item, or a group of declared ties.
OrderElement = int | Sequence[int]
Ranking = tuple[Hashable, Sequence[OrderElement]] | tuple[Hashable, Sequence[OrderElement], Any]


# --------------------------------------------------------------------------------------------
# Parsing and pairwise evidence
# --------------------------------------------------------------------------------------------


def _as_item(value: Any, n_items: int, annotator: Hashable) -> int:
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
        shown_set = frozenset(_as_item(i, n_items, annotator) for i in shown)
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
            group = [_as_item(e, n_items, annotator) for e in element]
        else:
            group = [_as_item(element, n_items, annotator)]
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
class _Answer:
    annotator: Hashable
    key: str
    groups: list[list[int]]
    shown: frozenset[int]
    pairs: np.ndarray  # (n, n) 0/1, pairs[a, b] = 1: a above b


def _parse_rankings(rankings: Sequence[Any], n_items: int) -> list[_Answer]:
    if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
        raise InvalidInput(f"n_items must be a positive integer, got {n_items!r}")
    if isinstance(rankings, str | bytes | Mapping) or not isinstance(rankings, Sequence):
        raise InvalidInput(
            "rankings must be a list of (annotator_id, best-first order) pairs, "
            f"got {type(rankings).__name__}"
        )
    if len(rankings) == 0:
        raise InvalidInput("no rankings to aggregate; wait for at least one annotator")
    answers: list[_Answer] = []
    keys: set[str] = set()
    for entry in rankings:
        if not isinstance(entry, Sequence) or len(entry) not in (2, 3):
            raise InvalidInput(
                f"each ranking must be (annotator_id, order) or (annotator_id, order, shown), "
                f"got {entry!r}"
            )
        annotator, order = entry[0], entry[1]
        shown = entry[2] if len(entry) == 3 else None
        key = _annotator_key(annotator)
        if key in keys:
            raise InvalidInput(
                f"annotator {annotator!r} answered twice in one round; keep one ranking each"
            )
        keys.add(key)
        groups, shown_set = parse_ranking(order, int(n_items), annotator, shown)
        answers.append(
            _Answer(annotator, key, groups, shown_set, pairwise_matrix(groups, shown_set, n_items))
        )
    return answers


def _annotator_key(annotator: Hashable) -> str:
    if isinstance(annotator, bool) or not isinstance(annotator, str | int | np.integer):
        raise InvalidInput(
            f"annotator ids must be strings or integers (they are stored as JSON keys), "
            f"got {annotator!r}"
        )
    return str(annotator)


# --------------------------------------------------------------------------------------------
# Agreement: Kendall's W with ties
# --------------------------------------------------------------------------------------------


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


def _mid_ranks(answer: _Answer, items: Sequence[int]) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Aggregation rules on pairwise evidence
# --------------------------------------------------------------------------------------------


def _order_by(primary: np.ndarray, *tiebreaks: np.ndarray) -> list[int]:
    """Indices sorted by descending ``primary``, then descending tie-breaks, then ascending index."""
    n = len(primary)
    keys = [np.arange(n)]
    keys.extend(-np.round(np.asarray(t, dtype=float), 9) for t in reversed(tiebreaks))
    keys.append(-np.round(np.asarray(primary, dtype=float), 9))
    return [int(i) for i in np.lexsort(keys)]


def _net_wins(pairwise: np.ndarray) -> np.ndarray:
    return pairwise.sum(axis=1) - pairwise.sum(axis=0)


def _copeland_scores(pairwise: np.ndarray) -> np.ndarray:
    margin = pairwise - pairwise.T
    tolerance = 1e-9 * max(1.0, float(np.abs(pairwise).max(initial=0.0)))
    return (margin > tolerance).sum(axis=1) - (margin < -tolerance).sum(axis=1).astype(float)


def _kemeny_cost(order: Sequence[int], pairwise: np.ndarray) -> float:
    """Total pairwise evidence against ``order`` (weight of every b > a with a placed above b)."""
    position = np.empty(len(order), dtype=int)
    position[list(order)] = np.arange(len(order))
    above = position[:, None] < position[None, :]
    return float(pairwise.T[above].sum())


def _kemeny_exact(pairwise: np.ndarray) -> list[int]:
    from scipy.optimize import Bounds, LinearConstraint, milp

    n = len(pairwise)
    pairs = list(itertools.combinations(range(n), 2))
    index = {pair: k for k, pair in enumerate(pairs)}
    # x_ab = 1 when a (< b) is placed above b; cost of that choice: evidence for b > a.
    # Cost = sum_{a<b} x_ab W[b, a] + (1 - x_ab) W[a, b] = const + x_ab (W[b, a] - W[a, b]).
    cost = np.array([pairwise[b, a] - pairwise[a, b] for a, b in pairs])

    def above(a: int, b: int) -> tuple[int, int]:  # (variable, sign): "a above b" = x or 1 - x
        return (index[(a, b)], 1) if a < b else (index[(b, a)], -1)

    rows, upper = [], []
    # Transitivity: for every triple, no cycle a>b>c>a and no cycle a>c>b>a.
    for a, b, c in itertools.combinations(range(n), 3):
        for cycle in ((a, b, c), (a, c, b)):
            row = np.zeros(len(pairs))
            constant = 0
            for u, v in ((cycle[0], cycle[1]), (cycle[1], cycle[2]), (cycle[2], cycle[0])):
                var, sign = above(u, v)
                row[var] += sign
                constant += 0 if sign == 1 else 1
            rows.append(row)
            upper.append(2 - constant)
    constraints = (
        [LinearConstraint(np.array(rows), -np.inf, np.array(upper, dtype=float))] if rows else []
    )
    result = milp(
        cost,
        integrality=np.ones(len(pairs)),
        bounds=Bounds(0, 1),
        constraints=constraints,
    )
    if not result.success:
        raise ConvergenceError(f"Kemeny integer program failed: {result.message}")
    x = np.round(result.x).astype(int)
    wins = np.zeros(n)
    for (a, b), value in zip(pairs, x, strict=True):
        wins[a if value else b] += 1
    # In a transitive tournament the win counts are n-1, n-2, ..., 0: they are the order.
    return [int(i) for i in np.argsort(-wins, kind="stable")]


def _kemeny_local_search(pairwise: np.ndarray, starts: Sequence[Sequence[int]]) -> list[int]:
    best, best_cost = None, math.inf
    margin = pairwise - pairwise.T  # margin[a, b] > 0: evidence prefers a above b
    for start in starts:
        order = list(start)
        improved = True
        while improved:
            improved = False
            for i in range(len(order)):
                item = order[i]
                rest = order[:i] + order[i + 1 :]
                # gain of placing `item` at slot j in `rest`: sum of margin[item, x] for x below.
                below_gain = np.array(
                    [
                        margin[item, rest[j:]].sum() if j < len(rest) else 0.0
                        for j in range(len(rest) + 1)
                    ]
                )
                above_gain = np.array([margin[rest[:j], item].sum() for j in range(len(rest) + 1)])
                gain = below_gain + above_gain
                j = int(np.argmax(gain))
                if gain[j] > gain[i] + 1e-12:
                    order = [*rest[:j], item, *rest[j:]]
                    improved = True
        cost = _kemeny_cost(order, pairwise)
        if cost < best_cost - 1e-12:
            best, best_cost = order, cost
    assert best is not None
    return best


def _settle_ties(order: list[int], pairwise: np.ndarray, preference: np.ndarray) -> list[int]:
    """Among orders of equal Kemeny cost, prefer higher ``preference`` (then lower index): swap
    adjacent items whose pairwise evidence is exactly balanced, which leaves the cost unchanged."""
    order = list(order)
    tolerance = 1e-9 * max(1.0, float(np.abs(pairwise).max(initial=0.0)))
    for _ in range(len(order)):
        swapped = False
        for i in range(len(order) - 1):
            a, b = order[i], order[i + 1]
            balanced = abs(pairwise[a, b] - pairwise[b, a]) <= tolerance
            prefer_b = (preference[b], -b) > (preference[a], -a)
            if balanced and prefer_b:
                order[i], order[i + 1] = b, a
                swapped = True
        if not swapped:
            break
    return order


def kemeny_order(pairwise: np.ndarray, exact_max: int = KEMENY_EXACT_MAX) -> list[int]:
    """The Kemeny–Young order of a pairwise evidence matrix.

    Parameters
    ----------
    pairwise : (n, n) ndarray
        ``pairwise[a, b] >= 0``: evidence that ``a`` beats ``b``.
    exact_max : int
        Solve exactly (integer programming, ``scipy.optimize.milp``) up to this many items;
        beyond, run insertion local search from the Borda and Copeland orders (a 1-opt local
        optimum: no single item can move to lower the cost).

    Returns
    -------
    list of int
        Best first; minimises the total evidence against the order. Exactly balanced pairs are
        settled by net wins, then by item index.
    """
    pairwise = np.asarray(pairwise, dtype=float)
    n = len(pairwise)
    net = _net_wins(pairwise)
    if n <= 1:
        return list(range(n))
    if n <= exact_max:
        order = _kemeny_exact(pairwise)
    else:
        starts = [_order_by(net), _order_by(_copeland_scores(pairwise), net)]
        order = _kemeny_local_search(pairwise, starts)
    return _settle_ties(order, pairwise, net)


def _plackett_luce_scores(answers: Sequence[_Answer], n_items: int) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Annotator reliability
# --------------------------------------------------------------------------------------------


@dataclass
class _Evidence:
    agree: float = 0.0  # soft count of pairwise agreements with the leave-one-out consensus
    disagree: float = 0.0
    checks_passed: float = 0.0  # attention checks, as fractions of their pairs passed
    checks_failed: float = 0.0
    rounds: int = 0

    def plus(self, other: _Evidence, factor: float = 1.0) -> _Evidence:
        return _Evidence(
            self.agree + factor * other.agree,
            self.disagree + factor * other.disagree,
            self.checks_passed + factor * other.checks_passed,
            self.checks_failed + factor * other.checks_failed,
            self.rounds + other.rounds,
        )


@dataclass
class AnnotatorReliability:
    """What a campaign has learnt about each annotator's reliability; updated by :func:`aggregate`.

    Model: a one-coin Dawid–Skene model over pairwise comparisons. Annotator ``j`` orders any pair
    correctly with probability ``p_j``, independently; ``p_j`` has a Beta prior
    (``prior_agree``, ``prior_disagree``: by default mildly trusting, a new annotator starts at
    3/5). Evidence, pooled over all rounds: soft counts of pairwise agreement with the
    leave-one-out weighted consensus of the other annotators (each pair counted by how sure
    the others are, so pairs nobody else judged count for nothing; and discounted by
    ``9 / (2n + 5)``, the design effect of pairs drawn from one ranking of ``n`` items) and
    attention checks (a known-worst item placed above a real one), each check worth
    ``CHECK_PSEUDO_PAIRS`` pairs.
    The voting weight is the log-odds ``log(p_j / (1 - p_j))``: 0 for a coin-flipping spammer,
    negative for an annotator who reverses rankings.

    Parameters
    ----------
    prior : dict, optional
        Another reliability's :meth:`to_dict` (say, the annotator pool's record across
        campaigns): its evidence seeds this one, scaled by ``prior_discount``. Only evidence is
        taken from it; this campaign's own rounds are recorded separately and ``to_dict`` keeps
        the two apart, so seeding twice never double-counts.
    prior_discount : float
        Weight in [0, 1] of the seeded evidence (default 0.5: other campaigns had other images).
    prior_agree, prior_disagree : float
        Beta prior pseudo-counts of every annotator's pairwise accuracy.
    """

    prior: dict | None = None
    prior_discount: float = 0.5
    prior_agree: float = 3.0
    prior_disagree: float = 2.0
    _own: dict[str, _Evidence] = field(default_factory=dict, init=False, repr=False)
    _seed: dict[str, _Evidence] = field(default_factory=dict, init=False, repr=False)

    VERSION = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.prior_discount <= 1.0:
            raise InvalidInput(f"prior_discount must be in [0, 1], got {self.prior_discount}")
        if self.prior_agree <= 0 or self.prior_disagree <= 0:
            raise InvalidInput("prior_agree and prior_disagree must be positive pseudo-counts")
        if self.prior is not None:
            seeded = AnnotatorReliability.from_dict(self.prior)
            for key in set(seeded._own) | set(seeded._seed):
                total = seeded._evidence(key)
                self._seed[key] = _Evidence().plus(total, self.prior_discount)
            self.prior = None  # kept as evidence, not as a second copy of the dict

    # -- queries ---------------------------------------------------------------------------

    def _evidence(self, key: str) -> _Evidence:
        total = _Evidence()
        if key in self._seed:
            total = total.plus(self._seed[key])
        if key in self._own:
            total = total.plus(self._own[key])
        return total

    def accuracy(self, annotator_id: Hashable, extra: _Evidence | None = None) -> float:
        """Posterior mean pairwise accuracy ``p_j`` (0.6 for an annotator never seen)."""
        evidence = self._evidence(_annotator_key(annotator_id))
        if extra is not None:
            evidence = evidence.plus(extra)
        agree = self.prior_agree + evidence.agree + CHECK_PSEUDO_PAIRS * evidence.checks_passed
        disagree = (
            self.prior_disagree + evidence.disagree + CHECK_PSEUDO_PAIRS * evidence.checks_failed
        )
        return agree / (agree + disagree)

    def weight(self, annotator_id: Hashable, extra: _Evidence | None = None) -> float:
        """Voting weight: log-odds of :meth:`accuracy`, clipped to about +-3.9."""
        p = float(np.clip(self.accuracy(annotator_id, extra), *ACCURACY_CLIP))
        return math.log(p / (1.0 - p))

    def rounds(self, annotator_id: Hashable) -> int:
        """Rounds of this campaign in which the annotator answered."""
        own = self._own.get(_annotator_key(annotator_id))
        return own.rounds if own else 0

    @property
    def annotators(self) -> list[str]:
        """Ids (as strings) of every annotator with evidence, own or seeded."""
        return sorted(set(self._own) | set(self._seed))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per annotator: accuracy, weight, rounds and attention checks passed/failed."""
        out = {}
        for key in self.annotators:
            evidence = self._evidence(key)
            out[key] = {
                "accuracy": self.accuracy(key),
                "weight": self.weight(key),
                "rounds": self.rounds(key),
                "checks_passed": evidence.checks_passed,
                "checks_failed": evidence.checks_failed,
            }
        return out

    # -- updates ----------------------------------------------------------------------------

    def record(self, annotator_id: Hashable, evidence: _Evidence) -> None:
        """Add one round's evidence about an annotator (done by :func:`aggregate`)."""
        key = _annotator_key(annotator_id)
        self._own[key] = self._own.get(key, _Evidence()).plus(evidence)

    @classmethod
    def combine(cls, records: Iterable[Mapping[str, Any]]) -> AnnotatorReliability:
        """Pool several campaigns' records (their :meth:`to_dict`) into one, e.g. the annotator
        pool's record to seed a new campaign with ``AnnotatorReliability(prior=pool.to_dict())``.

        Only each campaign's own evidence is summed (never what it was seeded with), so pooling
        campaigns that were themselves seeded from the pool does not count anything twice.
        """
        pool = cls()
        for record in records:
            campaign = cls.from_dict(record)
            for key, evidence in campaign._own.items():
                pool._own[key] = pool._own.get(key, _Evidence()).plus(evidence)
        return pool

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able, versioned dictionary; :meth:`from_dict` restores it exactly."""

        def dump(table: dict[str, _Evidence]) -> dict[str, dict[str, float]]:
            return {
                key: {
                    "agree": e.agree,
                    "disagree": e.disagree,
                    "checks_passed": e.checks_passed,
                    "checks_failed": e.checks_failed,
                    "rounds": e.rounds,
                }
                for key, e in sorted(table.items())
            }

        return {
            "version": self.VERSION,
            "prior_agree": self.prior_agree,
            "prior_disagree": self.prior_disagree,
            "prior_discount": self.prior_discount,
            "annotators": dump(self._own),
            "seeded": dump(self._seed),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnnotatorReliability:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or data.get("version") != cls.VERSION:
            raise InvalidInput(
                f"not an AnnotatorReliability dict of version {cls.VERSION}: "
                f"{str(data)[:80]!r}; build it with AnnotatorReliability.to_dict()"
            )
        try:
            reliability = cls(
                prior_discount=float(data.get("prior_discount", 0.5)),
                prior_agree=float(data["prior_agree"]),
                prior_disagree=float(data["prior_disagree"]),
            )

            def load(table: Mapping[str, Any]) -> dict[str, _Evidence]:
                return {
                    str(key): _Evidence(
                        float(v["agree"]),
                        float(v["disagree"]),
                        float(v["checks_passed"]),
                        float(v["checks_failed"]),
                        int(v["rounds"]),
                    )
                    for key, v in table.items()
                }

            reliability._own = load(data["annotators"])
            reliability._seed = load(data.get("seeded", {}))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidInput(f"malformed AnnotatorReliability dict: {error!r}") from error
        return reliability


# --------------------------------------------------------------------------------------------
# The consensus
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Consensus:
    """One round's consensus.

    Attributes
    ----------
    order : tuple of int
        Every item, best first. Items in ``known_worst`` come last.
    scores : (n,) ndarray
        One score per item, higher = better (method-specific scale: net wins for Borda,
        Copeland score, PL log-strength, ``n - 1 - position`` for Kemeny and auto).
    weights : dict
        annotator_id -> weight used (1.0 for the unweighted methods; log-odds for ``"auto"``).
    agreement : float
        Kendall's W (tie-corrected) of the raw answers, in [0, 1]: 1 = all the same, about 0 =
        unrelated or opposed. For partial answers, shown-but-unranked items share the mid-rank
        of the places below the ranked ones, and items an annotator was not shown get the
        neutral mid-rank, so a top-k answer counts as a ranking with a tie at the bottom.
        Attention items (``known_worst``) are left out: W measures agreement on the real items.
    pairwise : (n, n) ndarray
        ``pairwise[a, b] >= 0``: weighted evidence that ``a`` beats ``b`` (for ``"auto"``, a
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


def _signed_votes(answers: Sequence[_Answer]) -> np.ndarray:
    """(annotators, n, n) votes: +1 a above b, -1 b above a, 0 no statement."""
    stacked = np.stack([a.pairs for a in answers])
    return stacked - np.transpose(stacked, (0, 2, 1))


def _weighted_pairwise(answers: Sequence[_Answer], weights: Sequence[float]) -> np.ndarray:
    total = np.zeros_like(answers[0].pairs)
    for answer, w in zip(answers, weights, strict=True):
        total += w * answer.pairs if w >= 0 else -w * answer.pairs.T
    return total


def _round_evidence(
    answers: Sequence[_Answer],
    reliability: AnnotatorReliability,
    known_worst: frozenset[int],
    n_items: int,
) -> tuple[list[float], list[_Evidence]]:
    """EM-style passes: weights -> leave-one-out consensus -> this round's evidence -> weights.

    The leave-one-out consensus of pair (a, b) for annotator j is the posterior
    ``q = sigmoid(sum_{i != j} w_i v_i(a, b))`` of the one-coin model. With ``s = v_j (2q - 1)``
    per pair and ``n_eff = sum (2q - 1)^2``, ``E[s] = (2 p_j - 1) (2q - 1)^2``, so
    ``rho_j = sum s / n_eff`` estimates ``2 p_j - 1``; the round adds ``n_eff (1 + rho_j) / 2``
    agreements and ``n_eff (1 - rho_j) / 2`` disagreements to the annotator's record.
    """
    votes = _signed_votes(answers)  # (J, n, n)
    upper = np.triu(np.ones((n_items, n_items), dtype=bool), k=1)
    if known_worst:  # pairs with an attention item are judged by the check, not the crowd
        worst = np.zeros(n_items, dtype=bool)
        worst[list(known_worst)] = True
        upper &= ~(worst[:, None] | worst[None, :])
    pair_votes = votes[:, upper]  # (J, pairs)

    checks = [_attention_evidence(a, known_worst) for a in answers]
    weights = [reliability.weight(a.annotator, checks[j]) for j, a in enumerate(answers)]
    evidence = [_Evidence(rounds=1).plus(c) for c in checks]
    if len(answers) < 2 or pair_votes.shape[1] == 0:
        return weights, evidence
    # The pairs of one ranking are not independent: for a random ranking of n items Kendall's
    # tau has variance 2(2n + 5) / (9 n (n - 1)), against 2 / (n (n - 1)) for independent
    # pairs, so one ranking's pairs are worth 9 / (2n + 5) of their number (the design effect).
    design = [min(1.0, 9.0 / (2 * len(a.shown) + 5)) for a in answers]
    for _ in range(EM_PASSES):
        w = np.asarray(weights)[:, None]
        total = (w * pair_votes).sum(axis=0)
        new_evidence = []
        for j in range(len(answers)):
            others = total - w[j] * pair_votes[j]
            sureness = np.tanh(others / 2.0)  # = 2 sigmoid(others) - 1
            judged = pair_votes[j] != 0
            n_eff = float((sureness[judged] ** 2).sum())
            signed = float((pair_votes[j][judged] * sureness[judged]).sum())
            rho = float(np.clip(signed / n_eff, -1.0, 1.0)) if n_eff > 1e-12 else 0.0
            n_eff *= design[j]
            round_evidence = _Evidence(n_eff * (1 + rho) / 2, n_eff * (1 - rho) / 2, rounds=1)
            new_evidence.append(round_evidence.plus(checks[j]))
        new_weights = [
            reliability.weight(a.annotator, e) for a, e in zip(answers, new_evidence, strict=True)
        ]
        converged = np.allclose(new_weights, weights, atol=1e-4)
        weights, evidence = new_weights, new_evidence
        if converged:
            break
    return weights, evidence


def _attention_evidence(answer: _Answer, known_worst: frozenset[int]) -> _Evidence:
    """Fraction of an answer's (real item, known-worst item) pairs ordered correctly, per check."""
    passed = failed = 0.0
    for worst in known_worst:
        correct = answer.pairs[:, worst].sum() - answer.pairs[worst, list(known_worst)].sum()
        wrong = answer.pairs[worst, :].sum() - answer.pairs[worst, list(known_worst)].sum()
        judged = correct + wrong
        if judged > 0:
            passed += correct / judged
            failed += wrong / judged
    return _Evidence(checks_passed=float(passed), checks_failed=float(failed))


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
    method : {"auto", "borda", "copeland", "plackett_luce", "kemeny"}
        See the module docstring. ``"auto"`` weights annotators by ``reliability``.
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
        The Plackett–Luce fit or the Kemeny program did not converge.

    Notes
    -----
    With one annotator and no contrary history every method returns that annotator's order
    (shown-but-unranked items follow in index order).
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown consensus method {method!r}; use one of {', '.join(METHODS)}")
    answers = _parse_rankings(rankings, n_items)
    n_items = int(n_items)
    worst = frozenset(_as_item(i, n_items, "known_worst") for i in (known_worst or ()))
    if reliability is None:
        reliability = AnnotatorReliability()

    weights, evidence = _round_evidence(answers, reliability, worst, n_items)
    for answer, round_evidence in zip(answers, evidence, strict=True):
        reliability.record(answer.annotator, round_evidence)

    if method != "auto":
        weights = [1.0] * len(answers)
    pairwise = _weighted_pairwise(answers, weights)
    net = _net_wins(pairwise)
    if method == "borda":
        scores = net
        order = _order_by(scores)
    elif method == "copeland":
        scores = _copeland_scores(pairwise)
        order = _order_by(scores, net)
    elif method == "plackett_luce":
        scores = _plackett_luce_scores(answers, n_items)
        order = _order_by(scores, net)
    else:  # kemeny and auto
        order = kemeny_order(pairwise)
    if worst:
        order = [i for i in order if i not in worst] + [i for i in order if i in worst]
    if method in ("kemeny", "auto"):
        scores = np.empty(n_items)
        scores[order] = np.arange(n_items - 1, -1, -1, dtype=float)

    real_items = [i for i in range(n_items) if i not in worst]  # attention items are not opinions
    agreement = kendall_w([_mid_ranks(a, real_items or list(range(n_items))) for a in answers])
    scores = np.asarray(scores, dtype=float)
    scores.setflags(write=False)
    pairwise.setflags(write=False)
    return Consensus(
        order=tuple(order),
        scores=scores,
        weights={a.annotator: float(w) for a, w in zip(answers, weights, strict=True)},
        agreement=agreement,
        pairwise=pairwise,
        method=method,
    )
