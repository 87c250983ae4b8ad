"""The optimizer's state and helpers that every schedule's rounds use, declared once.

:class:`~rankloop.core.optimizer.RankSGD` owns them; the round mixins (:mod:`.verified`,
:mod:`.two_phase`) inherit this declaration so the type checker knows what they may use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np


class RoundParts:
    """Base of the round mixins: declarations only, nothing at run time."""

    if TYPE_CHECKING:
        _x: np.ndarray
        _m: int
        _seed: int
        _round: int
        _step: float
        _options: dict[str, Any]
        _direction_sum: np.ndarray
        _direction_count: float

        def _radius(self) -> float: ...
        def _perturbations(self, round_number: int, count: int | None = None) -> np.ndarray: ...
        def _to_shell(self, points: np.ndarray) -> np.ndarray: ...
        def _search_direction(self) -> np.ndarray: ...
        def _adapt_metric(
            self, weights: np.ndarray, ranked: int, count: int | None = None
        ) -> None: ...
