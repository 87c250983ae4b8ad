"""The path of a verified schedule's moves and the rank-one metric it defines.

Derivation and measurements: :mod:`rankloop.core.optimizer.verified` ("Path of moves"). The
path is CMA-ES's evolution path of the mean, kept for the moves a crowd verified, and the
stretch along it is CMA-ES's rank-one covariance update in the form a ranking-only line search
can afford (Hansen, N. (2016). The CMA evolution strategy: a tutorial. arXiv 1604.00772).
"""

from __future__ import annotations

import math

import numpy as np

#: Share of the path of moves kept from one move to the next (a memory of about 50 moves).
PATH_DECAY = 0.98
#: Largest stretch of the perturbations along the path.
MAX_PATH_STRETCH = 30.0


def update_path(path: np.ndarray, move: np.ndarray) -> np.ndarray:
    """The path of moves after one more move: ``p <- c p + sqrt(1 - c**2) move / |move|``.

    Normalised so that moves in independent random directions keep ``E|p|**2 = 1``; moves that
    keep a direction lengthen ``p`` toward ``sqrt((1 + c) / (1 - c))`` (about 10).
    """
    return PATH_DECAY * path + math.sqrt(1.0 - PATH_DECAY**2) * move / np.linalg.norm(move)


def stretch_along_path(xi: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Perturbations stretched by ``a = min(|p|, MAX_PATH_STRETCH)`` along ``p / |p|`` (when
    ``|p| > 1``): ``xi + (a - 1) (xi . v) v``, a rank-one metric ``A = I + (a - 1) v v^T``."""
    norm = float(np.linalg.norm(path))
    if norm <= 1.0:
        return xi
    v = path / norm
    return xi + (min(norm, MAX_PATH_STRETCH) - 1.0) * np.outer(xi @ v, v)


__all__ = ["MAX_PATH_STRETCH", "PATH_DECAY", "stretch_along_path", "update_path"]
