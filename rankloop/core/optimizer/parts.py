"""The optimizer's state, and what the rounds of every schedule derive from it.

:class:`OptimizerState` is the one object the rounds read and change: the campaign's fixed
settings (shape, ``m``, ``k``, seed, resolved options) and what moves from round to round (the
point, the direction memory, the metrics, the step, the round number, the pixel effect). The
round modules (:mod:`.verified`, :mod:`.two_phase`) are functions of it;
:class:`~rankloop.core.optimizer.RankSGD` owns one and adds the ask/tell protocol (the pending
proposal and the stats); :mod:`.state` converts it to and from the versioned dictionary.

Its methods are the quantities every schedule shares: the perturbation radius (from the step,
the radius ratio and the visible band), the perturbations (pinned noise, the diagonal metric, the
path stretch, the shell's tangent plane), the projection on the shell, the unit search direction
and the diagonal metric's update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.optimizer.metric import (
    metric_learning_rate,
    metric_warmup,
    rank_mu_update,
    widening_radius_ratio,
)
from rankloop.core.optimizer.noise import STREAM_PERTURBATIONS, standard_normals
from rankloop.core.optimizer.path import stretch_along_path
from rankloop.core.optimizer.visibility import next_floor


def to_shell(points: np.ndarray, dim: int) -> np.ndarray:
    """``points`` (rows) scaled to norm ``sqrt(dim)``; a zero row stays zero."""
    norms = np.linalg.norm(points, axis=-1, keepdims=True)
    norms = np.where(norms == 0.0, 1.0, norms)
    return points * (math.sqrt(dim) / norms)


def initial_step(x: np.ndarray, dim: int) -> float:
    """A tenth of the scale of ``x0`` (or of a standard normal vector when ``x0 = 0``); the
    rounds double or halve it within a few rounds."""
    scale = float(np.linalg.norm(x))
    if scale == 0.0:
        scale = math.sqrt(dim)
    return 0.1 * scale


@dataclass(eq=False)
class OptimizerState:
    """Everything a round of :class:`~rankloop.core.optimizer.RankSGD` reads or changes.

    Fixed for a campaign: ``shape``, ``m``, ``k``, ``seed``, ``options`` (resolved by
    :func:`~rankloop.core.optimizer.options.resolve_options`). Arrays are flat, of ``dim``
    numbers, and owned by the state (the rounds may update them in place).
    """

    shape: tuple[int, ...]
    m: int
    k: int | None
    seed: int
    options: dict[str, Any]
    #: The current point (the best so far).
    x: np.ndarray
    #: Sum of descent estimates (decayed by the momentum, or by the verified direction memory).
    direction_sum: np.ndarray
    #: Number of estimates in that sum (decayed alike).
    direction_count: float
    #: Diagonal metric: perturbations are ``scales * z``, ``z ~ N(0, I)``; mean(scales**2) = 1.
    scales: np.ndarray
    #: Path of the verified rounds' moves (:mod:`.path`), ``None`` for the two-phase schedule.
    path: np.ndarray | None
    #: The step ``eta``, a distance in x.
    step: float
    #: Number of completed rounds (the next proposal's round).
    round: int
    #: Two-phase: gradient rounds since the last line search.
    gradient_streak: int
    #: Two-phase: best point of the last gradient round (``None`` after a line search).
    winner: np.ndarray | None
    #: RMS pixel change (0..1) per unit of latent distance, ``None`` while unknown.
    pixel_effect: float | None
    #: A newly noted pixel effect, waiting for the pending round's tell.
    noted_effect: float | None
    #: Layout of a verified round (:data:`~rankloop.core.optimizer.verified.LAYOUTS`).
    layout: str
    #: The visibility band's floor as the crowd's agreement moved it (an RMS pixel change;
    #: ``None``: ``min_visible``, as before any agreement was noted).
    visible_floor: float | None = None
    #: A newly noted chance-corrected agreement, waiting for the pending round's tell.
    noted_agreement: float | None = None

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    # ------------------------------------------------------------------ radius
    def radius(self) -> float:
        """Perturbation scale ``mu``: points are ``x + mu * xi``, at distance ~``mu * sqrt(d)``."""
        norm = max(self.radius_ratio() * self.step, self.options["min_radius"])
        low, high = self.visible_band()
        norm = min(max(norm, low), max(high, low))
        return norm / math.sqrt(self.dim)

    def visible_band(self) -> tuple[float, float]:
        """Latent distances whose pixel change is the visible floor (:meth:`floor`) and
        ``max_visible`` (0, inf while the pixel effect is unknown or the band is off)."""
        effect, high = self.pixel_effect, self.options["max_visible"]
        if effect is None or high <= 0.0:
            return 0.0, math.inf
        return self.floor() / effect, high / effect

    def floor(self) -> float:
        """The smallest RMS pixel change of a perturbation or a step: ``min_visible``, moved
        within the band by the crowd's agreement (:mod:`.visibility`)."""
        if self.visible_floor is None or not self.options.get("follow_agreement", False):
            return self.options["min_visible"]
        return self.visible_floor

    def metric_warmup(self) -> float:
        """0 -> 1 over the first ``max(200, 2 d)`` rounds; 0 when no metric is learnt."""
        if not self.options["adapt_metric"]:
            return 0.0
        return metric_warmup(self.round, self.dim)

    def radius_ratio(self) -> float:
        """Perturbation norm over the step: the option, or widening from 0.2 to 2 with the metric.

        A short campaign (or a large ``d``, where the metric would need thousands of rounds)
        keeps the small perturbations that give the sharpest gradient estimate.
        """
        if self.options["radius_ratio"] is not None:
            return self.options["radius_ratio"]
        return widening_radius_ratio(self.metric_warmup())

    # ------------------------------------------------------------------ geometry
    def to_shell(self, points: np.ndarray) -> np.ndarray:
        return to_shell(points, self.dim)

    def perturbations(self, round_number: int, count: int | None = None) -> np.ndarray:
        """The round's ``count`` (default ``m``) perturbation directions ``xi`` (rows): pinned
        normals, scaled by the diagonal metric, stretched along the path, tangent on a shell."""
        count = self.m if count is None else count
        xi = standard_normals(self.seed, round_number, count * self.dim, STREAM_PERTURBATIONS)
        xi = xi.reshape(count, self.dim) * self.scales
        if self.path is not None:
            xi = stretch_along_path(xi, self.path)
        if self.options["shell"]:
            # Tangent perturbations: the radial part would only be undone by the projection.
            unit = self.x / np.linalg.norm(self.x)
            xi = xi - np.outer(xi @ unit, unit)
        return xi

    def search_direction(self) -> np.ndarray:
        """Unit descent direction: the normalised (decayed) sum of descent estimates ``-g``."""
        norm = float(np.linalg.norm(self.direction_sum))
        if norm == 0.0:
            return np.zeros_like(self.x)
        return self.direction_sum / norm

    # ------------------------------------------------------------------ updates
    def adapt_metric(self, weights: np.ndarray, ranked: int, count: int | None = None) -> None:
        """sep-CMA-ES's rank-mu update of the diagonal metric from this round's ranking
        (:func:`~rankloop.core.optimizer.metric.rank_mu_update`)."""
        # The rate is the schedule's, per round of m points (a verified round selects among
        # fewer perturbations, at the same pace).
        rate = metric_learning_rate(
            self.m, self.dim, self.options["metric_rate"], self.metric_warmup()
        )
        count = self.m if count is None else count
        if rate == 0.0:
            return
        z = standard_normals(self.seed, self.round, count * self.dim, STREAM_PERTURBATIONS)
        self.scales = rank_mu_update(self.scales, z.reshape(count, self.dim), weights, ranked, rate)

    def end_round(self) -> None:
        """What every round ends with, after its schedule's update: a pixel effect noted on this
        round's images takes effect, the step stays visible, the round number advances."""
        if self.noted_effect is not None:  # measured on this round's images: for the next ones
            self.pixel_effect, self.noted_effect = self.noted_effect, None
        if self.noted_agreement is not None:  # how well people told this round's images apart
            if self.options.get("follow_agreement", False):
                low, high = self.options["min_visible"], self.options["max_visible"]
                self.visible_floor = next_floor(self.floor(), self.noted_agreement, low, high)
            self.noted_agreement = None
        # A step whose pixel change nobody could see wastes the next rounds' trials.
        self.step = max(self.step, self.visible_band()[0])
        self.round += 1
