"""ZO-RankSGD: rank-only zeroth-order optimisation with an ask/tell interface.

Reference: Z. Tang, D. Rybin, T.-H. Chang, "Zeroth-Order Optimization Meets Human Feedback:
Provable Learning via Ranking Oracles", ICLR 2024 (arXiv 2303.03751).

One module per part of the method: :mod:`.ranksgd` (the ask/tell loop), :mod:`.verified` (the
default round: estimate and a ranked move in every round), :mod:`.two_phase` (the authors'
rounds), :mod:`.estimators` (rank-based gradient estimates), :mod:`.line_search` (the two-phase
line search and its step rule),
:mod:`.metric` (the learnt diagonal metric), :mod:`.path` (the verified rounds' path of moves
and its rank-one metric), :mod:`.noise` (the pinned generator),
:mod:`.options` (static parameters), :mod:`.parts` (:class:`~.parts.OptimizerState`, the one
state every round reads and changes, and what the rounds derive from it) and :mod:`.state`
(the versioned saved state). The rounds are functions of that state; :class:`RankSGD` owns it
and adds the ask/tell protocol. The flat API below is the public one.

The optimizer minimises ``f`` seen only through rankings of small sets of points: it never sees
a function value. Two schedules (option ``schedule``):

``"verified"`` (default)
    every round shows the current point, two trial steps along the learnt direction and
    perturbations around the shorter step (the *anchor*; version 3 states keep the
    ``"centred"`` layout, perturbations around the current point); the ranking
    of the perturbations and the anchor gives the next direction estimate, and the point moves
    only to a trial step (or a nearby perturbation) the crowd ranked above it (:mod:`.verified`
    derives it and says why it is correct). The step doubles, stays or halves with what wins.
    Every round from the second on can move the delivered point, and it never moves to a point
    nobody ranked above it.
``"two_phase"``
    the authors' loop, kept for comparison and for campaigns saved before it existed (version
    1 and 2 states continue with it). Two kinds of round alternate:

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
- the metric ``D`` (``adapt_metric``: by default on for this schedule unless ``shell``; the
  verified schedule learns a rank-one metric along its path of moves instead) is learnt by
  sep-CMA-ES's rank-mu
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
few scalars (state version 4; versions 1 to 3 still load and continue exactly as before).

Diffusion latents (``shell=True``) keep an isotropic metric by default: the model expects an
isotropic Gaussian latent, a campaign lasts far fewer rounds than the warm-up (``d`` = 16,384),
and a latent's coordinates carry no axis-aligned conditioning to learn. ``adapt_metric=True``
with ``shell=True`` still keeps every point at norm ``sqrt(d)``.

``tell`` takes either a best-first ``order`` (a top-k prefix allowed) or ``preferences=W``,
an ``(n, n)`` array where ``W[a, b] >= 0`` weighs the evidence that ``a`` is better than ``b``
(a consensus of several annotators); the estimate then generalises to
``g = sum_{a,b} W[a,b] (xi_b - xi_a) / sum W``.
"""

from rankloop.core.optimizer.estimators import dag_weights, preference_weights
from rankloop.core.optimizer.metric import (
    LARGE_RADIUS_RATIO,
    MAX_METRIC_CONDITION,
    MAX_METRIC_RATE,
    METRIC_WARMUP_MIN_ROUNDS,
    METRIC_WARMUP_PER_DIM,
    SMALL_RADIUS_RATIO,
)
from rankloop.core.optimizer.noise import reproducible_permutation, standard_normals
from rankloop.core.optimizer.options import SCHEDULES
from rankloop.core.optimizer.ranksgd import Proposal, RankSGD
from rankloop.core.optimizer.state import (
    STATE_VERSION,
    SUPPORTED_STATE_VERSIONS,
    dumps_state,
    loads_state,
)
from rankloop.core.optimizer.two_phase import GRADIENT, LINE_SEARCH
from rankloop.core.optimizer.verified import VERIFIED

__all__ = [
    "GRADIENT",
    "LARGE_RADIUS_RATIO",
    "LINE_SEARCH",
    "MAX_METRIC_CONDITION",
    "MAX_METRIC_RATE",
    "METRIC_WARMUP_MIN_ROUNDS",
    "METRIC_WARMUP_PER_DIM",
    "SCHEDULES",
    "SMALL_RADIUS_RATIO",
    "STATE_VERSION",
    "SUPPORTED_STATE_VERSIONS",
    "VERIFIED",
    "Proposal",
    "RankSGD",
    "dag_weights",
    "dumps_state",
    "loads_state",
    "preference_weights",
    "reproducible_permutation",
    "standard_normals",
]
