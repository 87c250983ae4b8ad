"""The learnt diagonal metric of the perturbations: sep-CMA-ES's rank-mu update, from ranks alone.

Perturbations are ``xi = D z`` with ``z ~ N(0, I)`` and ``D = diag(scales)``,
``mean(scales**2) = 1``.
Each gradient round's best ``min(m // 2, k)`` perturbations move the scales by sep-CMA-ES's
rank-mu update at ten times its rate (at most :data:`MAX_METRIC_RATE` per round), keeping a
condition of at most :data:`MAX_METRIC_CONDITION`. Selection reveals curvature only where
perturbations are as long as the step, and such perturbations blur the gradient estimate, so
the radius ratio widens from :data:`SMALL_RADIUS_RATIO` to :data:`LARGE_RADIUS_RATIO` and the
rate from 0 to full over a warm-up of ``max(200, 2 d)`` rounds. A long campaign thus learns
``D ~ diag(H)**-1/2``; a short one runs essentially the isotropic method.

References
----------
Ros, R. & Hansen, N. (2008). A simple modification in CMA-ES achieving linear time and space
complexity. *PPSN X*, LNCS 5199.
Hansen, N. (2016). The CMA evolution strategy: a tutorial. arXiv 1604.00772.
"""

from __future__ import annotations

import math

import numpy as np

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


def metric_warmup(round_number: int, dim: int) -> float:
    """0 -> 1 over the first ``max(200, 2 d)`` rounds.

    sep-CMA's rate is about ``1 / d`` per round, so the metric pays off only after some ``d``
    rounds, while large perturbations slow the early progress (a short campaign keeps the small
    ones it does best with).
    """
    rounds = max(METRIC_WARMUP_MIN_ROUNDS, METRIC_WARMUP_PER_DIM * dim)
    return min(1.0, round_number / rounds)


def widening_radius_ratio(warmup: float) -> float:
    """Perturbation norm over the step, widening from 0.2 to 2 as ``warmup`` goes from 0 to 1.

    Small perturbations give the sharpest gradient estimate; the metric needs perturbations as
    large as the step, where rankings feel the curvature.
    """
    return SMALL_RADIUS_RATIO * (LARGE_RADIUS_RATIO / SMALL_RADIUS_RATIO) ** warmup


def metric_learning_rate(m: int, dim: int, metric_rate: float, warmup: float) -> float:
    """This round's rate: sep-CMA's rank-mu rate times ``metric_rate``, capped, times ``warmup``.

    sep-CMA's rank-mu rate for full rankings (``mu = m // 2``) is the full-covariance rate times
    ``(d + 2) / 3``. A top-k ranking shares it: fewer selected points, same pace.
    """
    d = dim
    mueff = effective_selection_mass(m // 2)
    rate = 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((d + 2) ** 2 + mueff) * (d + 2) / 3.0
    return min(max(rate, 0.0) * metric_rate, MAX_METRIC_RATE) * warmup


def rank_mu_update(
    scales: np.ndarray, z: np.ndarray, weights: np.ndarray, ranked: int, rate: float
) -> np.ndarray:
    """sep-CMA-ES's rank-mu update of the diagonal metric, from one round's ranking.

    Parameters
    ----------
    scales : (d,) ndarray
        The current metric, ``mean(scales**2) = 1``.
    z : (m, d) ndarray
        The round's perturbations in whitened coordinates.
    weights : (m,) ndarray
        Per-point descent weights (higher = ranked better).
    ranked : int
        How many points the ranking placed.
    rate : float
        From :func:`metric_learning_rate`.

    Returns
    -------
    (d,) ndarray
        The new scales. The best ``mu = min(m // 2, ranked)`` perturbations get CMA's
        recombination weights ``c_j``; each scale moves by
        ``exp(rate / 2 * (sum_j c_j z_ji**2 - 1))``, whose expectation is 1 when the ranking
        ignores coordinate ``i``. With perturbations as large as the step, a coordinate of high
        curvature penalises the points that moved far along it, so its scale shrinks.
    """
    mu = max(1, min(len(z) // 2, ranked))
    recombination = recombination_weights(mu)
    selected = np.argsort(-weights, kind="stable")[:mu]
    change = recombination @ (z[selected] ** 2) - 1.0
    scales = scales * np.exp(0.5 * rate * change)
    # Keep the metric's condition below MAX_METRIC_CONDITION (variances: its square).
    scales = np.maximum(scales, float(scales.max()) / MAX_METRIC_CONDITION)
    return scales / math.sqrt(float(np.mean(scales**2)))


def recombination_weights(mu: int) -> np.ndarray:
    """CMA-ES's positive recombination weights ``log(mu + 1/2) - log(j)``, summing to one."""
    weights = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    return weights / weights.sum()


def effective_selection_mass(mu: int) -> float:
    """``mu_eff = 1 / sum c_j**2`` of :func:`recombination_weights`."""
    return 1.0 / float(np.sum(recombination_weights(max(mu, 1)) ** 2))
