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


def make_shifted_sphere(dim: int, seed: int = 0) -> Objective:
    """``|x - t|**2`` with a hidden centre ``t ~ N(0, I)`` (drawn from ``seed``)."""
    target = np.random.default_rng([seed, 13]).standard_normal(dim)

    def shifted_sphere(x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) - target
        return np.einsum("...i,...i->...", z, z)

    return shifted_sphere


@dataclass(frozen=True)
class Problem:
    """An objective with its dimension and a starting point (and, for an image objective, the
    renderer of its points: ``render(points, size=None) -> list of uint8 images``, at the
    objective's own size or ``size`` x ``size``)."""

    name: str
    objective: Objective
    x0: np.ndarray
    render: Callable[..., list[np.ndarray]] | None = None

    @property
    def dim(self) -> int:
        return self.x0.shape[-1]


def _colour_loss(image: np.ndarray) -> float:
    """Warm colour: mean squared RGB distance to orange (1, 0.5, 0.1)."""
    return float(np.mean(np.sum((image - np.array([1.0, 0.5, 0.1])) ** 2, axis=-1)))


def _contrast_loss(image: np.ndarray) -> float:
    """Contrast: how far the luminance's standard deviation is from its maximum, 0.5."""
    luminance = image @ np.array([0.299, 0.587, 0.114])
    return float((1.0 - float(luminance.std()) / 0.5) ** 2)


def _structure_loss(image: np.ndarray) -> float:
    """Structure: mirror symmetry, the mean absolute difference to the left-right mirror."""
    return float(np.mean(np.abs(image - image[:, ::-1])))


#: Tastes of a simulated crowd over ``cppn`` images: losses of an RGB image in [0, 1], >= 0.
CPPN_TASTES = {"colour": _colour_loss, "contrast": _contrast_loss, "structure": _structure_loss}


def make_cppn_problem(taste: str, seed: int = 0, size: int = 32) -> Problem:
    """A crowd's taste over the built-in ``cppn`` generator's images, as a problem.

    ``f(latent)`` renders the latent at ``size`` x ``size`` and scores it by
    :data:`CPPN_TASTES` ``[taste]``; ``x0 ~ N(0, I)`` from ``seed``, as a campaign starts.
    The problem renders (``render``, at ``size`` or a given side), so simulations can measure
    the pixel effect and a perceptual crowd can see the images at its tile size.
    """
    if taste not in CPPN_TASTES:
        raise InvalidInput(f"unknown taste {taste!r}; known: {', '.join(CPPN_TASTES)}")
    from gpu_worker.generators.cppn import CppnFamily  # the tools layer may use the generator

    family = CppnFamily()
    loss = CPPN_TASTES[taste]
    cache: dict[bytes, np.ndarray] = {}

    def render(points: np.ndarray, side: int | None = None) -> list[np.ndarray]:
        side = size if side is None else int(side)
        images = []
        for point in np.asarray(points, dtype=np.float64).reshape(-1, family.latent_dim):
            key = point.tobytes() + side.to_bytes(4, "little")
            if key not in cache:
                if len(cache) > 4096:
                    cache.clear()
                cache[key] = family.render(point, side, side)
            images.append(cache[key])
        return images

    def objective(x: np.ndarray) -> np.ndarray:
        points = np.asarray(x, dtype=np.float64)
        values = [loss(image / 255.0) for image in render(points)]
        return np.asarray(values).reshape(points.shape[:-1])

    x0 = np.random.default_rng([seed, 7]).standard_normal(family.latent_dim)
    return Problem(f"cppn {taste}", objective, x0, render)


PROBLEM_NAMES = ("quadratic", "rotated_quadratic", "rosenbrock", "projected", "sphere")


def make_problem(name: str, dim: int, seed: int = 0) -> Problem:
    """Build a benchmark problem; ``x0 ~ N(0, I)`` drawn from ``seed`` (the norm of a latent).

    ``name`` is ``"quadratic"`` (:func:`ill_conditioned_quadratic`), ``"rotated_quadratic"``
    (:func:`make_rotated_quadratic`, its basis fixed by ``seed``), ``"rosenbrock"`` or
    ``"projected"`` (:func:`make_projected_quadratic`, its projection fixed by ``seed``) or
    ``"sphere"`` (:func:`make_shifted_sphere`, its centre fixed by ``seed``).
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
    if name == "sphere":
        return Problem(name, make_shifted_sphere(dim, seed=seed), x0)
    raise InvalidInput(f"unknown problem {name!r}; known: {', '.join(PROBLEM_NAMES)}")


__all__ = [
    "CPPN_TASTES",
    "PROBLEM_NAMES",
    "Objective",
    "Problem",
    "ill_conditioned_quadratic",
    "make_cppn_problem",
    "make_problem",
    "make_projected_quadratic",
    "make_rotated_quadratic",
    "make_shifted_sphere",
    "rosenbrock",
]
