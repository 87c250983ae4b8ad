"""The authors' two-phase schedule: gradient rounds, then a line search (``schedule="two_phase"``).

Kept for comparison and for campaigns saved before the verified schedule existed (version 1 and 2
states continue with it). The package docstring describes the rounds; this module holds their
points and their updates, as functions of the optimizer's
:class:`~rankloop.core.optimizer.parts.OptimizerState`.

References
----------
Tang, Z., Rybin, D. & Chang, T.-H. (2024). Zeroth-order optimization meets human feedback:
provable learning via ranking oracles. *ICLR* (arXiv 2303.03751).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rankloop.core.optimizer.estimators import dag_weights, preference_weights
from rankloop.core.optimizer.line_search import (
    candidate_labels,
    display_order,
    next_step,
    step_factors,
)
from rankloop.core.optimizer.parts import OptimizerState

GRADIENT = "gradient"
LINE_SEARCH = "line_search"


def next_kind(state: OptimizerState) -> str:
    """Kind of the next round: a line search after ``gradient_rounds`` gradient rounds."""
    if state.gradient_streak >= state.options["gradient_rounds"]:
        return LINE_SEARCH
    return GRADIENT


def shown_points(state: OptimizerState, kind: str) -> np.ndarray:
    """The points of the next round of ``kind``, flat, in the order they are shown."""
    if kind == GRADIENT:
        return gradient_points(state, state.round, state.radius())
    return line_search_points(state)[display_order(state.seed, state.round, state.m)]


def gradient_points(state: OptimizerState, round_number: int, radius: float) -> np.ndarray:
    points = state.x + radius * state.perturbations(round_number)
    return state.to_shell(points) if state.options["shell"] else points


def line_search_points(state: OptimizerState) -> np.ndarray:
    """Unshuffled line-search points: steps (longest first), gradient winner, current best."""
    direction = state.search_direction()
    steps = state.step * step_factors(state.m)
    points = state.x + steps[:, None] * direction[None, :]
    if state.options["shell"]:
        points = state.to_shell(points)
    winner = state.x if state.winner is None else state.winner
    return np.vstack([points, winner[None, :], state.x[None, :]])


def tell_two_phase(
    state: OptimizerState,
    kind: str,
    order: list[int] | None,
    preferences: np.ndarray | None,
    n: int,
) -> dict[str, Any]:
    """Update ``state`` from the ranking of a round of ``kind`` (``n`` points shown); return
    the round's outcome for the stats (moved, picked_step, accepted, picked)."""
    if order is not None:
        weights, best, ranked = dag_weights(order, n), order[0], len(order)
    else:
        assert preferences is not None
        weights = preference_weights(preferences)
        best, ranked = int(np.argmax(weights)), n
    if kind == GRADIENT:
        return _tell_gradient(state, weights, best, ranked)
    return _tell_line_search(state, best)


def _tell_gradient(
    state: OptimizerState, weights: np.ndarray, best: int, ranked: int
) -> dict[str, Any]:
    perturbations = state.perturbations(state.round)
    points = state.x + state.radius() * perturbations
    if state.options["shell"]:
        points = state.to_shell(points)
    state.winner = points[best].copy()
    state.direction_sum += weights @ perturbations
    state.direction_count += 1.0
    if state.options["adapt_metric"]:
        state.adapt_metric(weights, ranked)
    state.gradient_streak += 1
    moved = 0.0
    # The round before a line search does not move: the search then probes a fresh direction
    # (after a step along it, the best step along the same line would look shorter than it is).
    if state.options["sgd_moves"] and next_kind(state) == GRADIENT:
        moved = _move(state, state.x + state.step * state.search_direction())
    return {"moved": moved, "picked_step": 0.0, "accepted": int(moved > 0), "picked": "none"}


def _move(state: OptimizerState, target: np.ndarray) -> float:
    """Move to ``target`` (projected on the shell if asked); decay the direction memory."""
    if state.options["shell"]:
        target = state.to_shell(target)
    moved = float(np.linalg.norm(target - state.x))
    state.x = target
    momentum = state.options["momentum"]
    state.direction_sum *= momentum
    state.direction_count *= momentum
    return moved


def _tell_line_search(state: OptimizerState, displayed_best: int) -> dict[str, Any]:
    chosen = int(display_order(state.seed, state.round, state.m)[displayed_best])
    points = line_search_points(state)
    label = candidate_labels(state.m)[chosen]
    moved = float(np.linalg.norm(points[chosen] - state.x))
    state.step, picked_step = next_step(state.step, label, state.m)
    accepted = label != "best"
    if accepted:
        _move(state, points[chosen].copy())
    state.winner = None
    state.gradient_streak = 0
    return {
        "moved": moved if accepted else 0.0,
        "picked_step": picked_step,
        "accepted": int(accepted),
        "picked": label,
    }
