"""Synthetic objectives for the optimizer benchmark and the crowd simulator.

Every objective is a plain numpy function ``f(x) -> values`` that takes points along the last
axis (``x`` of shape ``(..., d)``) and returns one value per point (shape ``(...)``); lower is
better. :func:`make_problem` bundles an objective with a reproducible starting point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rankloop.core.errors import InvalidInput

Objective = Callable[[np.ndarray], np.ndarray]


def ill_conditioned_quadratic(x: np.ndarray, condition: float = 1e6) -> np.ndarray:
    """Ellipsoid ``sum_i condition**(i/(d-1)) * x_i**2``: curvatures from 1 to ``condition``.

    Parameters
    ----------
    x : ndarray, shape (..., d)
    condition : float
        Ratio of the largest to the smallest curvature.
    """
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[-1]
    scales = condition ** (np.arange(d) / max(d - 1, 1))
    return np.einsum("...i,i->...", x * x, scales)


def make_rotated_quadratic(dim: int, condition: float = 1e6, seed: int = 0) -> Objective:
    """:func:`ill_conditioned_quadratic` in a random orthonormal basis (drawn from ``seed``).

    The same spectrum with no axis-aligned structure: a diagonal metric cannot learn it, so it
    shows what a method gains from axis alignment alone.
    """
    rng = np.random.default_rng([seed, 11])
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))

    def rotated_quadratic(x: np.ndarray) -> np.ndarray:
        return ill_conditioned_quadratic(np.asarray(x, dtype=np.float64) @ rotation, condition)

    return rotated_quadratic


def rosenbrock(x: np.ndarray) -> np.ndarray:
    """Rosenbrock's chained valley ``sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``; minimum 0 at 1."""
    x = np.asarray(x, dtype=np.float64)
    head, tail = x[..., :-1], x[..., 1:]
    return np.sum(100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2, axis=-1)


def make_projected_quadratic(
    dim: int, rank: int = 10, condition: float = 10.0, seed: int = 0
) -> Objective:
    """An objective of ``d`` variables that depends only on a ``rank``-dimensional projection.

    ``f(x) = sum_j c_j ((P x)_j - t_j)^2`` where ``P`` has ``rank`` orthonormal rows drawn at
    random (from ``seed``), ``t ~ N(0, I)`` is a hidden target and the ``c_j`` run from 1 to
    ``condition``. It mimics a preference over a diffusion latent that only a few directions
    of the latent affect.

    Returns
    -------
    callable
        ``f(x)`` for ``x`` of shape ``(..., dim)``.
    """
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    projection = basis.T.copy()  # (rank, dim), orthonormal rows
    target = rng.standard_normal(rank)
    weights = condition ** (np.arange(rank) / max(rank - 1, 1))

    def projected_quadratic(x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) @ projection.T - target
        return np.einsum("...j,j->...", z * z, weights)

    return projected_quadratic


@dataclass(frozen=True)
class Problem:
    """An objective with its dimension and a starting point."""

    name: str
    objective: Objective
    x0: np.ndarray

    @property
    def dim(self) -> int:
        return self.x0.shape[-1]


PROBLEM_NAMES = ("quadratic", "rotated_quadratic", "rosenbrock", "projected")


def make_problem(name: str, dim: int, seed: int = 0) -> Problem:
    """Build a benchmark problem; ``x0 ~ N(0, I)`` drawn from ``seed`` (the norm of a latent).

    ``name`` is ``"quadratic"`` (:func:`ill_conditioned_quadratic`), ``"rotated_quadratic"``
    (:func:`make_rotated_quadratic`, its basis fixed by ``seed``), ``"rosenbrock"`` or
    ``"projected"`` (:func:`make_projected_quadratic`, its projection fixed by ``seed``).
    """
    rng = np.random.default_rng([seed, 7])
    x0 = rng.standard_normal(dim)
    if name == "quadratic":
        return Problem(name, ill_conditioned_quadratic, x0)
    if name == "rotated_quadratic":
        return Problem(name, make_rotated_quadratic(dim, seed=seed), x0)
    if name == "rosenbrock":
        return Problem(name, rosenbrock, x0)
    if name == "projected":
        return Problem(name, make_projected_quadratic(dim, seed=seed), x0)
    raise InvalidInput(f"unknown problem {name!r}; known: {', '.join(PROBLEM_NAMES)}")


__all__ = [
    "PROBLEM_NAMES",
    "Objective",
    "Problem",
    "ill_conditioned_quadratic",
    "make_problem",
    "make_projected_quadratic",
    "make_rotated_quadratic",
    "rosenbrock",
]
