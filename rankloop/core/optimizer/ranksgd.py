"""RankSGD: ZO-RankSGD's ask/tell loop, its state and its shared parts (see the package; the rounds
of each schedule live in verified.py and two_phase.py).

References
----------
Tang, Z., Rybin, D. & Chang, T.-H. (2024). Zeroth-order optimization meets human feedback:
provable learning via ranking oracles. *ICLR* (arXiv 2303.03751).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.errors import InvalidInput, ProtocolError
from rankloop.core.optimizer.estimators import validate_order, validate_preferences
from rankloop.core.optimizer.line_search import display_order
from rankloop.core.optimizer.metric import (
    metric_learning_rate,
    metric_warmup,
    rank_mu_update,
    widening_radius_ratio,
)
from rankloop.core.optimizer.noise import STREAM_PERTURBATIONS, standard_normals
from rankloop.core.optimizer.options import resolve_options
from rankloop.core.optimizer.path import stretch_along_path
from rankloop.core.optimizer.state import STATE_VERSION, read_state_dict
from rankloop.core.optimizer.two_phase import GRADIENT, LINE_SEARCH, TwoPhaseRounds
from rankloop.core.optimizer.verified import ANCHORED, VERIFIED, VerifiedRounds


@dataclass(frozen=True)
class Proposal:
    """One round's points to be ranked.

    Attributes
    ----------
    points : ndarray, shape (n, *x0.shape)
        What the annotators see, in this order; ``tell`` takes indices into it.
    kind : str
        ``"gradient"`` or ``"line_search"``.
    round : int
        The round number this proposal belongs to (0-based).
    """

    points: np.ndarray
    kind: str
    round: int


class RankSGD(TwoPhaseRounds, VerifiedRounds):
    """ZO-RankSGD with gradient and line-search rounds and self-adapting step and radius.

    Parameters
    ----------
    x0 : array_like
        Starting point, any shape; the optimizer works on its flattened copy.
    m : int
        Perturbations per gradient round (points shown per round).
    k : int or None
        How many top items annotators are asked to rank (None: full rankings). Informational:
        ``tell`` accepts any non-empty best-first prefix.
    seed : int
        Selects the perturbations and shuffles: round ``t`` draws from ``(seed, t)``.
    **options
        ``step``: initial step, a distance (default ``0.1 * |x0|``, or ``0.1 * sqrt(d)`` if
        ``x0 = 0``); ``radius_ratio``: perturbation norm over the step (default: 0.2, widening
        to 2 as the metric warms up); ``adapt_metric``: learn a diagonal metric (default: for the
        two-phase schedule, unless ``shell``; verified rounds stretch their perturbations along
        the path of moves instead); ``metric_rate``: its rate in units of sep-CMA-ES's (10); ``min_radius``:
        floor on the perturbation norm, e.g. so that people still see a difference (0);
        ``gradient_rounds``: gradient rounds per line search (3); ``sgd_moves``: move after the
        gradient rounds too (True); ``momentum``: share of the averaged direction kept after a
        move (0); ``shell``: keep every point at norm ``sqrt(d)``, for Gaussian latents (False);
        ``schedule``: ``"verified"`` (default) or ``"two_phase"`` (the options ``gradient_rounds``,
        ``sgd_moves`` and ``momentum`` are the two-phase loop's); ``min_visible`` and
        ``max_visible``: the RMS pixel change (0..1) that perturbations keep once the pixel
        effect is known (0.03, 0.12; see :meth:`note_pixel_effect`).

    Raises
    ------
    InvalidInput
        A bad ``x0``, ``m``, ``k`` or ``seed``; an unknown option (the message names it and the
        known ones); an option value that is not a number, or is out of range.

    Notes
    -----
    ``ask`` before every ``tell``; asking again before ``tell`` returns the same proposal, so a
    redelivered task renders the same images.
    """

    def __init__(self, x0: Any, m: int = 8, k: int | None = None, seed: int = 0, **options: Any):
        x0 = np.asarray(x0, dtype=np.float64)
        options = resolve_options(options)
        if x0.size == 0 or not np.all(np.isfinite(x0)):
            raise InvalidInput("x0 must be a non-empty array of finite numbers")
        if not isinstance(m, int | np.integer) or m < 2:
            raise InvalidInput(f"m must be an integer >= 2 (points per round), got {m!r}")
        if k is not None and (not isinstance(k, int | np.integer) or not 1 <= k <= m):
            raise InvalidInput(
                f"k must be None (full rankings) or an integer in 1..m={m}, got {k!r}"
            )
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")

        self._shape = tuple(x0.shape)
        self._m = int(m)
        self._k = None if k is None else int(k)
        self._seed = int(seed)
        self._options: dict[str, Any] = options
        # Verified rounds show their perturbations around the anchor (version 3 states: "centred").
        self._layout_name = ANCHORED
        x = x0.reshape(-1).copy()
        if self._options["shell"]:
            x = self._to_shell(x)
        self._x = x
        self._direction_sum = np.zeros_like(x)  # sum of descent estimates (decayed by momentum)
        self._direction_count = 0.0  # number of estimates in that sum
        # Diagonal metric: perturbations are scales * z with z ~ N(0, I); mean(scales**2) = 1.
        self._scales = np.ones_like(x)
        # Path of the verified rounds' moves (verified.py): perturbations stretch along it.
        self._path: np.ndarray | None = (
            np.zeros_like(x) if self._options["schedule"] == VERIFIED else None
        )
        step = self._options["step"]
        self._step = float(step) if step is not None else self._initial_step(x)
        self._round = 0
        self._gradient_streak = 0  # gradient rounds since the last line search
        # Best point of the last gradient round, a line-search candidate (None after a line search).
        self._winner: np.ndarray | None = None
        self._pending = False  # an ask is out and awaits its tell
        self._proposal: Proposal | None = None
        # RMS pixel change (0..1) per unit of latent distance, measured at render time (None:
        # unknown); a newly noted value waits for the pending round's tell, so a redelivered
        # task still renders the points it rendered before.
        self._pixel_effect: float | None = None
        self._noted_effect: float | None = None
        self._stats: dict[str, Any] = {}
        self._update_stats(kind="none", moved=0.0, picked_step=0.0, accepted=0, picked="none")

    # ------------------------------------------------------------------ public API
    @property
    def x(self) -> np.ndarray:
        """Current best point, shape of ``x0`` (a copy)."""
        return self._x.reshape(self._shape).copy()

    @property
    def round(self) -> int:
        """Number of completed rounds (the next proposal's round)."""
        return self._round

    @property
    def stats(self) -> dict[str, Any]:
        """Plain scalars for dashboards: step, radius, moved, picked step, kind, ..."""
        return dict(self._stats)

    @property
    def m(self) -> int:
        return self._m

    @property
    def k(self) -> int | None:
        return self._k

    @property
    def next_kind(self) -> str:
        """Kind of the next proposal."""
        if self._options["schedule"] == VERIFIED:
            return VERIFIED
        return (
            LINE_SEARCH if self._gradient_streak >= self._options["gradient_rounds"] else GRADIENT
        )

    def ask(self) -> Proposal:
        """Return this round's points; asking again before ``tell`` returns the same proposal."""
        if self._pending and self._proposal is not None:
            return self._proposal
        kind = self.next_kind
        if kind == VERIFIED:
            points = self._verified_points()[self._display()]
        elif kind == GRADIENT:
            points = self._gradient_points(self._round, self._radius())
        else:
            points = self._line_search_points()[display_order(self._seed, self._round, self._m)]
        points = points.reshape((len(points), *self._shape))
        points.setflags(write=False)
        self._proposal = Proposal(points=points, kind=kind, round=self._round)
        self._pending = True
        return self._proposal

    def tell(self, order: Sequence[int] | None = None, *, preferences: Any = None) -> None:
        """Feed back this round's ranking.

        Parameters
        ----------
        order : sequence of int, optional
            Best-first indices into the proposal's points; a top-k prefix is allowed.
        preferences : array_like (n, n), optional
            Instead of ``order``: ``W[a, b] >= 0`` weighs the evidence that point ``a`` is better
            than point ``b``.
        """
        if not self._pending:
            raise ProtocolError(
                "tell() without a pending ask(): call ask() first, "
                "then tell() exactly once per round"
            )
        proposal = self.ask()
        n = len(proposal.points)
        if (order is None) == (preferences is None):
            raise InvalidInput(
                "pass exactly one of order= (best-first indices) or preferences= (W)"
            )
        if order is not None:
            order = validate_order(order, n)
        else:
            preferences = validate_preferences(preferences, n)
        if proposal.kind == VERIFIED:
            outcome = self._tell_verified(order, preferences)
        else:
            outcome = self._tell_two_phase(proposal.kind, order, preferences, n)
        if self._noted_effect is not None:  # measured on this round's images: for the next ones
            self._pixel_effect, self._noted_effect = self._noted_effect, None
        # A step whose pixel change nobody could see wastes the next rounds' trials.
        self._step = max(self._step, self._visible_band()[0])
        self._round += 1
        self._pending = False
        self._proposal = None
        self._update_stats(kind=proposal.kind, **outcome)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """A versioned dictionary of plain values and four arrays of ``d`` numbers (exact).

        The arrays are the point, the averaged direction, the diagonal metric (``None`` when
        it is not learnt) and the last gradient round's best point (``None`` after a line
        search).
        """
        return {
            "version": STATE_VERSION,
            "shape": list(self._shape),
            "m": self._m,
            "k": self._k,
            "seed": self._seed,
            "options": dict(self._options),
            "x": self._x.copy(),
            "direction_sum": self._direction_sum.copy(),
            "direction_count": self._direction_count,
            # None while the metric is off (shell campaigns): their states stay as small as before.
            "scales": self._scales.copy() if self._options["adapt_metric"] else None,
            "step": self._step,
            "round": self._round,
            "gradient_streak": self._gradient_streak,
            "winner": None if self._winner is None else self._winner.copy(),
            "pending": self._pending,
            "stats": dict(self._stats),
            "pixel_effect": self._pixel_effect,
            "noted_effect": self._noted_effect,
            "layout": self._layout_name,
            "path": None if self._path is None else self._path.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RankSGD:
        """Rebuild an optimizer from :meth:`state_dict` output of any supported version.

        Raises :class:`InvalidInput` for an unsupported version or a malformed dictionary.
        """
        fields = read_state_dict(state)
        opt = cls.__new__(cls)
        opt._shape = fields["shape"]
        opt._m = fields["m"]
        opt._k = fields["k"]
        opt._seed = fields["seed"]
        opt._options = fields["options"]
        opt._x = fields["x"]
        opt._direction_sum = fields["direction_sum"]
        opt._direction_count = fields["direction_count"]
        opt._scales = fields["scales"]
        opt._step = fields["step"]
        opt._round = fields["round"]
        opt._gradient_streak = fields["gradient_streak"]
        opt._winner = fields["winner"]
        opt._pending = fields["pending"]
        opt._proposal = None
        opt._stats = fields["stats"]
        opt._pixel_effect = fields["pixel_effect"]
        opt._noted_effect = fields["noted_effect"]
        opt._layout_name = fields["layout"]
        opt._path = fields["path"]
        return opt

    def note_pixel_effect(self, effect: float) -> None:
        """Record the generator's pixel-space effect measured on this round's images.

        ``effect`` is the RMS pixel change (values scaled to 0..1) per unit of latent distance
        (:func:`rankloop.core.round_step.pixel_effect`). From the next round on, perturbations
        keep an RMS pixel change within ``[min_visible, max_visible]`` and steps at least
        ``min_visible``: a change nobody can see is a wasted round, a new picture is no longer
        a local comparison. Several notes before one tell keep the last.
        """
        effect = float(effect)
        if not (math.isfinite(effect) and effect > 0.0):
            raise InvalidInput(f"pixel effect must be a positive finite number, got {effect!r}")
        if self._pixel_effect is not None:  # smooth round-to-round variation (geometric mean)
            effect = math.sqrt(effect * self._pixel_effect)
        self._noted_effect = effect

    # ------------------------------------------------------------------ internals
    @property
    def _dim(self) -> int:
        return math.prod(self._shape)

    def _initial_step(self, x: np.ndarray) -> float:
        # A tenth of the scale of x0 (or of a standard normal vector when x0 = 0); the line search
        # doubles or halves it within a few rounds.
        scale = float(np.linalg.norm(x))
        if scale == 0.0:
            scale = math.sqrt(self._dim)
        return 0.1 * scale

    def _radius(self) -> float:
        """Perturbation scale ``mu``: points are ``x + mu * xi``, at distance ~``mu * sqrt(d)``."""
        norm = max(self._radius_ratio() * self._step, self._options["min_radius"])
        low, high = self._visible_band()
        norm = min(max(norm, low), max(high, low))
        return norm / math.sqrt(self._dim)

    def _visible_band(self) -> tuple[float, float]:
        """Latent distances whose pixel change is ``min_visible`` and ``max_visible`` (0, inf
        while the pixel effect is unknown or the band is off)."""
        effect, high = self._pixel_effect, self._options["max_visible"]
        if effect is None or high <= 0.0:
            return 0.0, math.inf
        return self._options["min_visible"] / effect, high / effect

    def _metric_warmup(self) -> float:
        """0 -> 1 over the first ``max(200, 2 d)`` rounds; 0 when no metric is learnt."""
        if not self._options["adapt_metric"]:
            return 0.0
        return metric_warmup(self._round, self._dim)

    def _radius_ratio(self) -> float:
        """Perturbation norm over the step: the option, or widening from 0.2 to 2 with the metric.

        A short campaign (or a large ``d``, where the metric would need thousands of rounds)
        keeps the small perturbations that give the sharpest gradient estimate.
        """
        if self._options["radius_ratio"] is not None:
            return self._options["radius_ratio"]
        return widening_radius_ratio(self._metric_warmup())

    def _to_shell(self, points: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(points, axis=-1, keepdims=True)
        norms = np.where(norms == 0.0, 1.0, norms)
        return points * (math.sqrt(self._dim) / norms)

    def _perturbations(self, round_number: int, count: int | None = None) -> np.ndarray:
        count = self._m if count is None else count
        xi = standard_normals(self._seed, round_number, count * self._dim, STREAM_PERTURBATIONS)
        xi = xi.reshape(count, self._dim) * self._scales
        if self._path is not None:
            xi = stretch_along_path(xi, self._path)
        if self._options["shell"]:
            # Tangent perturbations: the radial part would only be undone by the projection.
            unit = self._x / np.linalg.norm(self._x)
            xi = xi - np.outer(xi @ unit, unit)
        return xi

    def _search_direction(self) -> np.ndarray:
        """Unit descent direction: the normalised (decayed) sum of descent estimates ``-g``."""
        norm = float(np.linalg.norm(self._direction_sum))
        if norm == 0.0:
            return np.zeros_like(self._x)
        return self._direction_sum / norm

    def _adapt_metric(self, weights: np.ndarray, ranked: int, count: int | None = None) -> None:
        """sep-CMA-ES's rank-mu update of the diagonal metric from this round's ranking
        (:func:`~rankloop.core.optimizer.metric.rank_mu_update`)."""
        # The rate is the schedule's, per round of m points (a verified round selects among
        # fewer perturbations, at the same pace).
        rate = metric_learning_rate(
            self._m, self._dim, self._options["metric_rate"], self._metric_warmup()
        )
        count = self._m if count is None else count
        if rate == 0.0:
            return
        z = standard_normals(self._seed, self._round, count * self._dim, STREAM_PERTURBATIONS)
        self._scales = rank_mu_update(
            self._scales, z.reshape(count, self._dim), weights, ranked, rate
        )

    def _update_stats(self, **values: Any) -> None:
        self._stats = {
            "round": self._round,
            "step": float(self._step),
            "radius": float(self._radius() * math.sqrt(self._dim)),
            # Spread of the learnt metric: the standard deviation of log(scales) (0: isotropic).
            "metric_spread": float(np.std(np.log(self._scales))),
            "estimates_averaged": float(self._direction_count),
            "x_norm": float(np.linalg.norm(self._x)),
            **{k: (float(v) if isinstance(v, float) else v) for k, v in values.items()},
        }
