"""Kemeny–Young aggregation: the order that disagrees least with the pairwise evidence.

Exact by integer programming (``scipy.optimize.milp`` over the pairwise order variables with
the transitivity constraints of every triple) for up to :data:`KEMENY_EXACT_MAX` items;
insertion local search from the Borda and Copeland orders beyond (Kemeny aggregation is NP-hard).

References
----------
Kemeny, J. G. (1959). Mathematics without numbers. *Daedalus* 88(4).
Young, H. P. & Levenglick, A. (1978). A consistent extension of Condorcet's election principle.
*SIAM J. Appl. Math.* 35(2).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from rankloop.core.consensus.rules import copeland_scores, net_wins, order_by
from rankloop.core.errors import ConvergenceError

KEMENY_EXACT_MAX = 10
"""Largest item count for which Kemeny is solved exactly (integer programming, tens of ms):
m = 8 candidates plus an attention item fit."""


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
    net = net_wins(pairwise)
    if n <= 1:
        return list(range(n))
    if n <= exact_max:
        order = _kemeny_exact(pairwise)
    else:
        starts = [order_by(net), order_by(copeland_scores(pairwise), net)]
        order = _kemeny_local_search(pairwise, starts)
    return _settle_ties(order, pairwise, net)
