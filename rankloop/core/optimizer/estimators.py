"""Rank-based gradient estimators: per-item descent weights from a ranking or a preference matrix.

A ranking of the points ``x + mu * xi_i`` defines a DAG (every ranked pair, plus every ranked item
over every unranked one); the DAG estimator ``g = (1/|E|) sum over edges (a -> b) of (xi_b - xi_a)``
points toward worse, and is unbiased for the gradient of a Gaussian smoothing of ``f``. Both
estimators here return the weights ``w`` of the descent direction ``-g = sum_i w_i xi_i``.

References
----------
Tang, Z., Rybin, D. & Chang, T.-H. (2024). Zeroth-order optimization meets human feedback:
provable learning via ranking oracles. *ICLR* (arXiv 2303.03751).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rankloop.core.errors import InvalidInput


def dag_weights(order: Sequence[int], n: int) -> np.ndarray:
    """Per-item weights of the DAG estimator's descent direction.

    For a best-first top-``k`` list over ``n`` items, ranked item of 1-based rank ``r`` gets
    ``n + 1 - 2r`` and every unranked item ``-k``, all divided by ``|E| = k(k-1)/2 + k(n-k)``.
    The descent direction is ``sum_i w_i * xi_i`` (the negative of the estimate ``g``); the
    weights sum to zero.
    """
    k = len(order)
    edges = k * (k - 1) / 2 + k * (n - k)
    weights = np.full(n, -float(k))
    for position, item in enumerate(order):
        weights[item] = n + 1 - 2 * (position + 1)
    return weights / edges


def preference_weights(preferences: np.ndarray) -> np.ndarray:
    """Per-item descent weights from pairwise preferences ``W`` (``W[a, b]``: a better than b).

    ``-g = sum_{a,b} W[a,b] (xi_a - xi_b) / sum W``, so item ``i`` weighs
    ``(sum_b W[i, b] - sum_a W[a, i]) / sum W``. With ``W`` the DAG of one ranking this equals
    :func:`dag_weights`.
    """
    total = float(preferences.sum())
    return (preferences.sum(axis=1) - preferences.sum(axis=0)) / total


def validate_order(order: Any, n: int) -> list[int]:
    if isinstance(order, str | bytes) or not hasattr(order, "__iter__"):
        raise InvalidInput(
            f"order must be a best-first list of integer indices into the proposal's {n} points, "
            f"got {type(order).__name__}"
        )
    items = (
        list(np.asarray(order).reshape(-1).tolist())
        if isinstance(order, np.ndarray)
        else list(order)
    )
    if not items:
        raise InvalidInput("order is empty: give at least the index of the best point")
    result = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            raise InvalidInput(
                f"order must hold integer indices, got {item!r} ({type(item).__name__})"
            )
        if not 0 <= int(item) < n:
            raise InvalidInput(f"order holds index {item}, but the proposal has points 0..{n - 1}")
        result.append(int(item))
    if len(set(result)) != len(result):
        repeated = sorted({i for i in result if result.count(i) > 1})
        raise InvalidInput(f"order repeats index(es) {repeated}: list each point at most once")
    return result


def validate_preferences(preferences: Any, n: int) -> np.ndarray:
    try:
        w = np.asarray(preferences, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"preferences must be a numeric ({n}, {n}) array: {exc}") from exc
    if w.shape != (n, n):
        raise InvalidInput(
            f"preferences must have shape ({n}, {n}) (one row and column per point), got {w.shape}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InvalidInput("preferences must be finite and >= 0 (W[a, b]: evidence that a beats b)")
    if float(w.sum()) - float(np.trace(w)) <= 0:
        raise InvalidInput("preferences hold no evidence (all off-diagonal weights are zero)")
    w = w.copy()
    np.fill_diagonal(w, 0.0)
    return w
