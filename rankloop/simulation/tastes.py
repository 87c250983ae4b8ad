"""A crowd of two disagreeing tastes: each group ranks by its own objective.

The campaign benchmark's crowds share one taste; real crowds do not. :class:`TastesCrowd`
splits a crowd into groups that each see their own hidden objective of the same points, so a
round's answers disagree for a reason no reliability weight can fix (nobody is careless). The
campaign it steers is judged on :func:`mixed_problem`: the mean of the tastes, each relative
to its value at the start, i.e. "what the crowd as a whole prefers" with the tastes equally
common.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.errors import InvalidInput
from rankloop.simulation.crowd import Crowd
from rankloop.simulation.objectives import Problem

__all__ = ["TastesCrowd", "mixed_problem"]

Taste = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TastesCrowd:
    """``groups[g]`` ranks the points by ``tastes[g]`` (lower = better)."""

    groups: tuple[Crowd, ...]
    tastes: tuple[Taste, ...]

    def __post_init__(self) -> None:
        if len(self.groups) != len(self.tastes) or not self.groups:
            raise InvalidInput("a tastes crowd needs one taste per group")
        ids = [a.id for group in self.groups for a in group.annotators]
        if len(set(ids)) != len(ids):
            raise InvalidInput(f"annotator ids must be unique across groups, got {ids}")

    def rank_points(
        self,
        points: np.ndarray,
        round_number: int,
        attention: Iterable[int] = (),
        attempt: int = 0,
        with_attention: bool = True,
    ) -> list[tuple[str, list[Any]]]:
        """Every annotator's answer: each group ranks the points (and, ``with_attention``, the
        attention item after them, a copy worse than every point) by its own taste."""
        attention = list(attention)
        answers: list[tuple[str, list[Any]]] = []
        for group, taste in zip(self.groups, self.tastes, strict=True):
            values = np.asarray(taste(points), dtype=float)
            shown = np.append(values, values.max()) if with_attention else values
            answers += group.rank(shown, round_number, attention, attempt=attempt)
        return answers


def mixed_problem(
    name: str, x0: np.ndarray, tastes: Sequence[Taste], render: Any = None
) -> Problem:
    """The problem a tastes crowd's campaign is judged on: ``mean_g f_g(x) / f_g(x0)``."""
    starts = [float(taste(x0)) for taste in tastes]
    if any(start <= 0 for start in starts):
        raise InvalidInput("every taste must be positive at the start point")

    def objective(x: np.ndarray) -> np.ndarray:
        return np.mean(
            [np.asarray(t(x), dtype=float) / s for t, s in zip(tastes, starts, strict=True)],
            axis=0,
        )

    return Problem(name, objective, x0, render)
