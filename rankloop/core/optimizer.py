"""ZO-RankSGD: rank-only zeroth-order optimisation with an ask/tell interface.

Reference: Z. Tang, D. Rybin, T.-H. Chang, "Zeroth-Order Optimization Meets Human Feedback:
Provable Learning via Ranking Oracles", ICLR 2024 (arXiv 2303.03751).

The optimizer minimises ``f`` seen only through rankings of small sets of points: it never sees
a function value. Two kinds of round alternate, as in the authors' practical loop:

gradient round
    ``m`` points ``x + mu * xi_i`` with ``xi_i = D z_i``, ``z_i ~ N(0, I)`` and ``D`` a learnt
    diagonal metric (the identity unless ``adapt_metric``); the ranking defines a DAG (every
    ranked pair, plus every ranked item over every unranked one) and the estimate is
    ``g = (1/|E|) * sum over edges (a -> b) of (xi_b - xi_a)``, which points toward worse. It is
    the DAG estimator, exact and unbiased, in the whitened variable ``y = D^-1 x``, mapped back
    by ``D``, so a step along ``-g`` is preconditioned by ``D**2``. Estimates are averaged into a
    search direction until a move is made.
line-search round
    points ``x + eta * 2**(1 - i) * u`` (``i = 0 .. max(m - 2, 2) - 1``) along the unit descent
    direction ``u = -g / |g|``, plus the best point of the last gradient round and the current
    best, shown shuffled (reproducibly from the seed). The winner becomes the new best.

Defaults that need no tuning (``gradient_rounds = 3``):

- the step ``eta`` starts at a tenth of ``|x0|`` and is set by what each line search reveals:
  the longest step won -> ``eta`` becomes four times the old one; another step won -> ``eta``
  becomes that step; staying at the current best (or a random perturbation) won -> halve;
- the smoothing radius follows the step: perturbations have norm ``radius_ratio * eta``;
- the metric ``D`` (``adapt_metric``, on unless ``shell``) is learnt by sep-CMA-ES's rank-mu
  update (Ros & Hansen, PPSN 2008) from each gradient round's best ``min(m // 2, k)``
  perturbations, at ten times sep-CMA's rate (at most 0.1 per round); it keeps
  ``mean(D**2) = 1`` and a condition of at most 1e4. Selection reveals curvature only where
  perturbations are as long as the step, and such perturbations blur the gradient estimate, so
  ``radius_ratio`` widens from 0.2 to 2 and the metric's rate from 0 to full over the first
  ``max(200, 2 d)`` rounds. A 10-30 round campaign, or any campaign with large ``d``, thus runs
  essentially the isotropic method; a long one learns ``D ~ diag(H)**-1/2``, which pays on
  axis-aligned ill-conditioning (measured: 15x lower f on the benchmark's d = 100 ellipsoid)
  and costs about 40% on a rotated one, where the wider perturbations only blur;
- between line searches every gradient round but the last also moves ``x`` by ``eta`` along
  its fresh estimate (``sgd_moves``), so most oracle calls move the point; the round just before
  a line search does not move, so the search probes a fresh direction. These moves are not
  verified by a ranking; ``sgd_moves=False`` gives the authors' loop, where only a line search
  moves ``x`` and ``x`` is always the winner of a ranking that included the previous best.

Unlike the authors' public notebook, the rank weights are the DAG's exact ``m + 1 - 2r`` (the
notebook's ``m + 2 - 2r`` does not sum to zero) and any display shuffle is undone.

Randomness is regenerated from ``(seed, round)``: raw 64-bit words of
``PCG64(SeedSequence([seed, round, stream]))`` (a bit stream that NumPy keeps stable across
versions, NEP 19), turned into uniforms with 53-bit resolution and into normals by Box–Muller
(:func:`standard_normals`). The state therefore holds no perturbation vectors: the current
point, one averaged direction, the diagonal metric, the last gradient round's best point and a
few scalars (state version 2; version 1 still loads and continues exactly as before, with no
metric).

Diffusion latents (``shell=True``) keep an isotropic metric by default: the model expects an
isotropic Gaussian latent, a campaign lasts far fewer rounds than the warm-up (``d`` = 16,384),
and a latent's coordinates carry no axis-aligned conditioning to learn. ``adapt_metric=True``
with ``shell=True`` still keeps every point at norm ``sqrt(d)``.

``tell`` takes either a best-first ``order`` (a top-k prefix allowed) or ``preferences=W``,
an ``(n, n)`` array where ``W[a, b] >= 0`` weighs the evidence that ``a`` is better than ``b``
(a consensus of several annotators); the estimate then generalises to
``g = sum_{a,b} W[a,b] (xi_b - xi_a) / sum W``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.errors import CorruptedObject, InvalidInput, ProtocolError

STATE_VERSION = 2
#: Version 1 (no metric) still loads, and continues exactly as it would have before.
SUPPORTED_STATE_VERSIONS = (1, 2)
#: Largest ratio between two scales of the learnt diagonal metric.
MAX_METRIC_CONDITION = 1e4
#: Cap on the metric's per-round learning rate (binds below d ~ 60, where sep-CMA's rate is high
#: and a noisy crowd would make the scales random-walk).
MAX_METRIC_RATE = 0.1
#: Default perturbation norm over the step without a metric, and once the metric is learnt.
SMALL_RADIUS_RATIO = 0.2
LARGE_RADIUS_RATIO = 2.0
#: The metric's warm-up lasts max(METRIC_WARMUP_MIN_ROUNDS, METRIC_WARMUP_PER_DIM * d) rounds.
METRIC_WARMUP_PER_DIM = 2.0
METRIC_WARMUP_MIN_ROUNDS = 200

#: Stream ids mixed into the seed sequence so that perturbations and shuffles never share bits.
_STREAM_PERTURBATIONS = 0
_STREAM_SHUFFLE = 1

GRADIENT = "gradient"
LINE_SEARCH = "line_search"


def standard_normals(seed: int, round_number: int, count: int, stream: int = 0) -> np.ndarray:
    """Draw ``count`` standard normals from a fixed, documented generator.

    Raw 64-bit words come from ``PCG64(SeedSequence([seed, round_number, stream]))``; each word's
    top 53 bits give a uniform in (0, 1) (``(w >> 11) + 0.5) * 2**-53``), and pairs of uniforms
    give two normals by Box–Muller: ``sqrt(-2 ln u1) * (cos 2 pi u2, sin 2 pi u2)``. Unlike
    ``Generator.standard_normal`` (whose algorithm NumPy may change, NEP 19) this depends only on
    the PCG64 bit stream and on ``log``/``cos``/``sin``, so values agree across NumPy versions and
    machines to within a few ulps.

    Parameters
    ----------
    seed, round_number, stream : int
        Non-negative integers that select the stream.
    count : int
        How many normals to return.

    Returns
    -------
    ndarray of float64, shape (count,)
    """
    pairs = (count + 1) // 2
    bit_generator = np.random.PCG64(np.random.SeedSequence([seed, round_number, stream]))
    words = bit_generator.random_raw(2 * pairs)
    uniforms = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * (2.0**-53)
    radius = np.sqrt(-2.0 * np.log(uniforms[:pairs]))
    angle = (2.0 * math.pi) * uniforms[pairs:]
    normals = np.empty(2 * pairs)
    normals[0::2] = radius * np.cos(angle)
    normals[1::2] = radius * np.sin(angle)
    return normals[:count]


def reproducible_permutation(seed: int, round_number: int, n: int) -> np.ndarray:
    """A permutation of ``range(n)`` from the same fixed generator (stream 1): argsort of uniforms."""
    bit_generator = np.random.PCG64(np.random.SeedSequence([seed, round_number, _STREAM_SHUFFLE]))
    words = bit_generator.random_raw(n)
    return np.argsort(words, kind="stable")


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


_DEFAULT_OPTIONS: dict[str, Any] = {
    # Initial line-search step (a distance in x); None: derived from x0 (see _initial_step).
    "step": None,
    # Smoothing radius as a fraction of the step: perturbations have norm ~ radius_ratio * step.
    # None: 0.2 (a sharp gradient estimate), widening to 2.0 while a learnt metric warms up
    # (selection must feel the curvature the metric learns from); see _radius_ratio.
    "radius_ratio": None,
    # Lower bound on the perturbation norm (e.g. so that humans still see a difference).
    "min_radius": 0.0,
    # Gradient rounds before each line search.
    "gradient_rounds": 3,
    # Share of the averaged direction kept after a move (0: reset, the authors' rule). Keeping
    # some did not help in the benchmark: the step after a line search is tuned to that line.
    "momentum": 0.0,
    # Also step along the averaged direction after the gradient rounds (SGD); line-search rounds
    # then calibrate the step. False: move only in line searches (the authors' loop).
    "sgd_moves": True,
    # Keep every point on the sphere of radius sqrt(d) (Gaussian latents of diffusion models).
    "shell": False,
    # Learn a diagonal metric for the perturbations from the rankings (sep-CMA's rank-mu
    # update); None: on unless shell (a latent's coordinates should stay exchangeable).
    "adapt_metric": None,
    # Learning rate of that metric, in units of sep-CMA-ES's rank-mu rate for the same d and m.
    "metric_rate": 10.0,
}


class RankSGD:
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
        to 2 as the metric warms up); ``adapt_metric``: learn a diagonal metric (default: unless
        ``shell``); ``metric_rate``: its rate in units of sep-CMA-ES's (10); ``min_radius``:
        floor on the perturbation norm, e.g. so that people still see a difference (0);
        ``gradient_rounds``: gradient rounds per line search (3); ``sgd_moves``: move after the
        gradient rounds too (True); ``momentum``: share of the averaged direction kept after a
        move (0); ``shell``: keep every point at norm ``sqrt(d)``, for Gaussian latents (False).

    Notes
    -----
    ``ask`` before every ``tell``; asking again before ``tell`` returns the same proposal, so a
    redelivered task renders the same images.
    """

    def __init__(self, x0: Any, m: int = 8, k: int | None = None, seed: int = 0, **options: Any):
        x0 = np.asarray(x0, dtype=np.float64)
        unknown = set(options) - set(_DEFAULT_OPTIONS)
        if unknown:
            raise InvalidInput(
                f"unknown RankSGD option(s) {sorted(unknown)}; known: {sorted(_DEFAULT_OPTIONS)}"
            )
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
        opts = {**_DEFAULT_OPTIONS, **options}
        if int(opts["gradient_rounds"]) < 1:
            raise InvalidInput("gradient_rounds must be >= 1")
        if not 0.0 <= float(opts["momentum"]) < 1.0:
            raise InvalidInput("momentum must be in [0, 1)")
        adapt_metric = (
            not bool(opts["shell"]) if opts["adapt_metric"] is None else bool(opts["adapt_metric"])
        )
        if opts["radius_ratio"] is not None and float(opts["radius_ratio"]) <= 0:
            raise InvalidInput("radius_ratio must be > 0")
        if not float(opts["metric_rate"]) >= 0:
            raise InvalidInput("metric_rate must be >= 0")
        if opts["step"] is not None and not float(opts["step"]) > 0:
            raise InvalidInput("step must be > 0 (a distance in x), or None to derive it from x0")
        if float(opts["min_radius"]) < 0:
            raise InvalidInput("min_radius must be >= 0")

        self._shape = tuple(x0.shape)
        self._m = int(m)
        self._k = None if k is None else int(k)
        self._seed = int(seed)
        self._options: dict[str, Any] = {
            "step": None if opts["step"] is None else float(opts["step"]),
            "radius_ratio": None if opts["radius_ratio"] is None else float(opts["radius_ratio"]),
            "min_radius": float(opts["min_radius"]),
            "gradient_rounds": int(opts["gradient_rounds"]),
            "momentum": float(opts["momentum"]),
            "sgd_moves": bool(opts["sgd_moves"]),
            "shell": bool(opts["shell"]),
            "adapt_metric": adapt_metric,
            "metric_rate": float(opts["metric_rate"]),
        }
        x = x0.reshape(-1).copy()
        if self._options["shell"]:
            x = self._to_shell(x)
        self._x = x
        self._direction_sum = np.zeros_like(x)  # sum of descent estimates (decayed by momentum)
        self._direction_count = 0.0  # number of estimates in that sum
        # Diagonal metric: perturbations are scales * z with z ~ N(0, I); mean(scales**2) = 1.
        self._scales = np.ones_like(x)
        step = self._options["step"]
        self._step = float(step) if step is not None else self._initial_step(x)
        self._round = 0
        self._gradient_streak = 0  # gradient rounds since the last line search
        # Best point of the last gradient round, a line-search candidate (None after a line search).
        self._winner: np.ndarray | None = None
        self._pending = False  # an ask is out and awaits its tell
        self._proposal: Proposal | None = None
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
        return (
            LINE_SEARCH if self._gradient_streak >= self._options["gradient_rounds"] else GRADIENT
        )

    def ask(self) -> Proposal:
        """Return this round's points; asking again before ``tell`` returns the same proposal."""
        if self._pending and self._proposal is not None:
            return self._proposal
        kind = self.next_kind
        if kind == GRADIENT:
            points = self._gradient_points(self._round, self._radius())
        else:
            points = self._line_search_points()[self._line_search_permutation()]
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
                "tell() without a pending ask(): call ask() first, then tell() exactly once per round"
            )
        proposal = self.ask()
        n = len(proposal.points)
        if (order is None) == (preferences is None):
            raise InvalidInput(
                "pass exactly one of order= (best-first indices) or preferences= (W)"
            )
        if order is not None:
            order = _validate_order(order, n)
            weights = dag_weights(order, n)
            best = order[0]
            ranked = len(order)
        else:
            w = _validate_preferences(preferences, n)
            weights = preference_weights(w)
            best = int(np.argmax(weights))
            ranked = n
        if proposal.kind == GRADIENT:
            outcome = self._tell_gradient(weights, best, ranked)
        else:
            outcome = self._tell_line_search(best)
        self._round += 1
        self._pending = False
        self._proposal = None
        self._update_stats(kind=proposal.kind, **outcome)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """A versioned dictionary of plain values and four arrays of ``d`` numbers; exact round trip.

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
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RankSGD:
        """Rebuild an optimizer from :meth:`state_dict` output."""
        try:
            if state["version"] not in SUPPORTED_STATE_VERSIONS:
                raise InvalidInput(
                    f"optimizer state version {state['version']!r} is not supported "
                    f"(this code reads versions {list(SUPPORTED_STATE_VERSIONS)})"
                )
            state = _upgrade_state(state)
            shape = tuple(int(s) for s in state["shape"])
            x = np.asarray(state["x"], dtype=np.float64).reshape(-1)
            opt = cls.__new__(cls)
            opt._shape = shape
            opt._m = int(state["m"])
            opt._k = None if state["k"] is None else int(state["k"])
            opt._seed = int(state["seed"])
            opt._options = dict(state["options"])
            opt._x = x.copy()
            opt._direction_sum = np.asarray(state["direction_sum"], dtype=np.float64).reshape(-1)
            opt._direction_count = float(state["direction_count"])
            scales = state["scales"]
            opt._scales = (
                np.ones_like(x) if scales is None else np.asarray(scales, np.float64).reshape(-1)
            )
            opt._step = float(state["step"])
            opt._round = int(state["round"])
            opt._gradient_streak = int(state["gradient_streak"])
            winner = state["winner"]
            opt._winner = None if winner is None else np.asarray(winner, np.float64).reshape(-1)
            opt._pending = bool(state["pending"])
            opt._proposal = None
            opt._stats = dict(state["stats"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"not a RankSGD state dictionary: {exc!r}") from exc
        if x.size != math.prod(shape) or not (
            opt._direction_sum.size == opt._scales.size == x.size
        ):
            raise InvalidInput("RankSGD state arrays do not match its shape")
        return opt

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
        """Perturbation scale ``mu`` (points are ``x + mu * xi``, so their distance is ~mu*sqrt(d))."""
        norm = max(self._radius_ratio() * self._step, self._options["min_radius"])
        return norm / math.sqrt(self._dim)

    def _metric_warmup(self) -> float:
        """0 -> 1 over the first ``max(200, 2 d)`` rounds; 0 when no metric is learnt.

        sep-CMA's rate is about ``1 / d`` per round, so the metric pays off only after some
        ``d`` rounds, while large perturbations slow the early progress (a short campaign keeps
        the small ones it does best with).
        """
        if not self._options["adapt_metric"]:
            return 0.0
        rounds = max(METRIC_WARMUP_MIN_ROUNDS, METRIC_WARMUP_PER_DIM * self._dim)
        return min(1.0, self._round / rounds)

    def _radius_ratio(self) -> float:
        """Perturbation norm over the step: the option, or widening from 0.2 to 2 with the metric.

        Small perturbations give the sharpest gradient estimate; the metric needs perturbations
        as large as the step, where rankings feel the curvature. A short campaign (or a large
        ``d``, where the metric would need thousands of rounds) keeps them small.
        """
        if self._options["radius_ratio"] is not None:
            return self._options["radius_ratio"]
        return (
            SMALL_RADIUS_RATIO * (LARGE_RADIUS_RATIO / SMALL_RADIUS_RATIO) ** self._metric_warmup()
        )

    def _to_shell(self, points: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(points, axis=-1, keepdims=True)
        norms = np.where(norms == 0.0, 1.0, norms)
        return points * (math.sqrt(self._dim) / norms)

    def _perturbations(self, round_number: int) -> np.ndarray:
        xi = standard_normals(self._seed, round_number, self._m * self._dim, _STREAM_PERTURBATIONS)
        xi = xi.reshape(self._m, self._dim) * self._scales
        if self._options["shell"]:
            # Tangent perturbations: the radial part would only be undone by the projection.
            unit = self._x / np.linalg.norm(self._x)
            xi = xi - np.outer(xi @ unit, unit)
        return xi

    def _gradient_points(self, round_number: int, radius: float) -> np.ndarray:
        points = self._x + radius * self._perturbations(round_number)
        return self._to_shell(points) if self._options["shell"] else points

    def _search_direction(self) -> np.ndarray:
        """Unit descent direction: the normalised (decayed) sum of descent estimates ``-g``."""
        norm = float(np.linalg.norm(self._direction_sum))
        if norm == 0.0:
            return np.zeros_like(self._x)
        return self._direction_sum / norm

    def _step_factors(self) -> np.ndarray:
        steps = max(self._m - 2, 2)
        return 2.0 ** (1 - np.arange(steps, dtype=np.float64))

    def _line_search_candidates(self) -> list[str]:
        steps = len(self._step_factors())
        return [f"step{i}" for i in range(steps)] + ["winner", "best"]

    def _line_search_points(self) -> np.ndarray:
        """Unshuffled line-search points: steps (longest first), gradient winner, current best."""
        direction = self._search_direction()
        steps = self._step * self._step_factors()
        points = self._x + steps[:, None] * direction[None, :]
        if self._options["shell"]:
            points = self._to_shell(points)
        winner = self._x if self._winner is None else self._winner
        return np.vstack([points, winner[None, :], self._x[None, :]])

    def _line_search_permutation(self) -> np.ndarray:
        n = len(self._step_factors()) + 2
        return reproducible_permutation(self._seed, self._round, n)

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
        candidates = self._line_search_candidates()
        permutation = self._line_search_permutation()
        chosen = int(permutation[displayed_best])
        points = self._line_search_points()
        label = candidates[chosen]
        factors = self._step_factors()
        moved = float(np.linalg.norm(points[chosen] - self._x))
        picked_step = 0.0
        if label.startswith("step"):
            i = int(label[4:])
            picked_step = float(self._step * factors[i])
            # Longest step won: the optimum lies further, grow; otherwise centre on the winner.
            self._step = picked_step * (2.0 if i == 0 else 1.0)
        elif label == "best":
            # Nothing beat staying: the steps were too long or the direction too noisy.
            self._step *= 0.5
        else:  # the gradient round's best perturbation won
            self._step *= 0.5
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

    def _adapt_metric(self, weights: np.ndarray, ranked: int) -> None:
        """sep-CMA-ES's rank-mu update of the diagonal metric, from this round's ranking.

        The best ``mu = min(m // 2, ranked)`` perturbations, in whitened coordinates ``z``, get
        CMA's recombination weights ``c_j``; each scale moves by
        ``exp(rate / 2 * (sum_j c_j z_ji**2 - 1))``, whose expectation is 1 when the ranking
        ignores coordinate ``i``. With perturbations as large as the step, a coordinate of high
        curvature penalises the points that moved far along it, so its scale shrinks: the
        metric learns ``diag(H)**-1/2`` from ranks alone (Ros & Hansen, PPSN 2008).
        """
        d = self._dim
        # sep-CMA's rank-mu rate for full rankings (mu = m // 2): the full-covariance rate
        # times (d + 2) / 3. A top-k ranking shares it: fewer selected points, same pace.
        mueff = _effective_selection_mass(self._m // 2)
        rate = 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((d + 2) ** 2 + mueff) * (d + 2) / 3.0
        mu = max(1, min(self._m // 2, ranked))
        recombination = _recombination_weights(mu)
        rate = (
            min(max(rate, 0.0) * self._options["metric_rate"], MAX_METRIC_RATE)
            * self._metric_warmup()
        )
        if rate == 0.0:
            return
        z = standard_normals(self._seed, self._round, self._m * d, _STREAM_PERTURBATIONS)
        selected = np.argsort(-weights, kind="stable")[:mu]
        z_selected = z.reshape(self._m, d)[selected]
        change = recombination @ (z_selected**2) - 1.0
        scales = self._scales * np.exp(0.5 * rate * change)
        # Keep the metric's condition below MAX_METRIC_CONDITION (variances: its square).
        scales = np.maximum(scales, float(scales.max()) / MAX_METRIC_CONDITION)
        self._scales = scales / math.sqrt(float(np.mean(scales**2)))

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


def _upgrade_state(state: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: an identity metric that never adapts, the fixed radius ratio it had."""
    if state["version"] == STATE_VERSION:
        return state
    options = {**state["options"], "adapt_metric": False, "metric_rate": 0.0}
    return {**state, "version": STATE_VERSION, "options": options, "scales": None}


def _recombination_weights(mu: int) -> np.ndarray:
    """CMA-ES's positive recombination weights ``log(mu + 1/2) - log(j)``, summing to one."""
    weights = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    return weights / weights.sum()


def _effective_selection_mass(mu: int) -> float:
    """``mu_eff = 1 / sum c_j**2`` of :func:`_recombination_weights`."""
    return 1.0 / float(np.sum(_recombination_weights(max(mu, 1)) ** 2))


def _validate_order(order: Any, n: int) -> list[int]:
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


def _validate_preferences(preferences: Any, n: int) -> np.ndarray:
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


def dumps_state(state: dict[str, Any]) -> bytes:
    """Serialise a :meth:`RankSGD.state_dict` as ``.npz``: arrays plus a JSON header."""
    arrays = {key: value for key, value in state.items() if isinstance(value, np.ndarray)}
    header = {key: value for key, value in state.items() if not isinstance(value, np.ndarray)}
    header["array_keys"] = sorted(arrays)
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    buffer = io.BytesIO()
    # numpy's stubs read **arrays as possibly holding its allow_pickle flag; the keys are state's.
    header_array = np.frombuffer(header_bytes, dtype=np.uint8)
    np.savez(buffer, __header__=header_array, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def loads_state(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`dumps_state`; raises :class:`CorruptedObject` on damaged bytes."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            header = json.loads(archive["__header__"].tobytes().decode("utf-8"))
            array_keys = header.pop("array_keys")
            state = dict(header)
            for key in array_keys:
                state[key] = archive[key].copy()
    except Exception as exc:  # zip, JSON, key and dtype errors all mean the same thing here
        raise CorruptedObject(f"optimizer state could not be decoded: {exc!r}") from exc
    if not isinstance(state.get("version"), int):
        raise CorruptedObject("optimizer state has no integer 'version' in its header")
    if state["version"] not in SUPPORTED_STATE_VERSIONS:
        raise CorruptedObject(
            f"optimizer state version {state['version']} is not supported "
            f"(expected one of {list(SUPPORTED_STATE_VERSIONS)})"
        )
    return state


__all__ = [
    "GRADIENT",
    "LINE_SEARCH",
    "Proposal",
    "RankSGD",
    "dag_weights",
    "dumps_state",
    "loads_state",
    "preference_weights",
    "reproducible_permutation",
    "standard_normals",
]
