"""The authors' two-phase schedule: gradient rounds, then a line search (``schedule="two_phase"``).

Kept for comparison and for campaigns saved before the verified schedule existed (version 1 and 2
states continue with it). The package docstring describes the rounds; this module holds their
points and their updates, as a part of :class:`~rankloop.core.optimizer.RankSGD`.

References
----------
Tang, Z., Rybin, D. & Chang, T.-H. (2024). Zeroth-order optimization meets human feedback:
provable learning via ranking oracles. *ICLR* (arXiv 2303.03751).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rankloop.core.optimizer.estimators import dag_weights, preference_weights
from rankloop.core.optimizer.line_search import (
    candidate_labels,
    display_order,
    next_step,
    step_factors,
)
from rankloop.core.optimizer.parts import RoundParts

GRADIENT = "gradient"
LINE_SEARCH = "line_search"


class TwoPhaseRounds(RoundParts):
    """The two-phase rounds of :class:`~rankloop.core.optimizer.RankSGD` (a mixin: it uses
    the optimizer's state and shared helpers)."""

    if TYPE_CHECKING:
        _gradient_streak: int
        _winner: np.ndarray | None

        @property
        def next_kind(self) -> str: ...

    def _gradient_points(self, round_number: int, radius: float) -> np.ndarray:
        points = self._x + radius * self._perturbations(round_number)
        return self._to_shell(points) if self._options["shell"] else points

    def _line_search_points(self) -> np.ndarray:
        """Unshuffled line-search points: steps (longest first), gradient winner, current best."""
        direction = self._search_direction()
        steps = self._step * step_factors(self._m)
        points = self._x + steps[:, None] * direction[None, :]
        if self._options["shell"]:
            points = self._to_shell(points)
        winner = self._x if self._winner is None else self._winner
        return np.vstack([points, winner[None, :], self._x[None, :]])

    def _tell_two_phase(
        self, kind: str, order: list[int] | None, preferences: np.ndarray | None, n: int
    ) -> dict[str, Any]:
        if order is not None:
            weights, best, ranked = dag_weights(order, n), order[0], len(order)
        else:
            assert preferences is not None
            weights = preference_weights(preferences)
            best, ranked = int(np.argmax(weights)), n
        if kind == GRADIENT:
            return self._tell_gradient(weights, best, ranked)
        return self._tell_line_search(best)

    def _tell_gradient(self, weights: np.ndarray, best: int, ranked: int) -> dict[str, Any]:
        perturbations = self._perturbations(self._round)
        points = self._x + self._radius() * perturbations
        if self._options["shell"]:
            points = self._to_shell(points)
        self._winner = points[best].copy()
        self._direction_sum += weights @ perturbations
        self._direction_count += 1.0
        if self._options["adapt_metric"]:
            self._adapt_metric(weights, ranked)
        self._gradient_streak += 1
        moved = 0.0
        # The round before a line search does not move: the search then probes a fresh direction
        # (after a step along it, the best step along the same line would look shorter than it is).
        if self._options["sgd_moves"] and self.next_kind == GRADIENT:
            moved = self._move(self._x + self._step * self._search_direction())
        return {"moved": moved, "picked_step": 0.0, "accepted": int(moved > 0), "picked": "none"}

    def _move(self, target: np.ndarray) -> float:
        """Move to ``target`` (projected on the shell if asked); decay the direction memory."""
        if self._options["shell"]:
            target = self._to_shell(target)
        moved = float(np.linalg.norm(target - self._x))
        self._x = target
        momentum = self._options["momentum"]
        self._direction_sum *= momentum
        self._direction_count *= momentum
        return moved

    def _tell_line_search(self, displayed_best: int) -> dict[str, Any]:
        chosen = int(display_order(self._seed, self._round, self._m)[displayed_best])
        points = self._line_search_points()
        label = candidate_labels(self._m)[chosen]
        moved = float(np.linalg.norm(points[chosen] - self._x))
        self._step, picked_step = next_step(self._step, label, self._m)
        accepted = label != "best"
        if accepted:
            self._move(points[chosen].copy())
        self._winner = None
        self._gradient_streak = 0
        return {
            "moved": moved if accepted else 0.0,
            "picked_step": picked_step,
            "accepted": int(accepted),
            "picked": label,
        }
