"""The optimizer's pinned random generator: perturbations and shuffles regenerated from a seed.

Raw 64-bit words of ``PCG64(SeedSequence([seed, round, stream]))`` (a bit stream that NumPy keeps
stable across versions, NEP 19), turned into uniforms with 53-bit resolution and into normals by
Box–Muller. The optimizer's state therefore holds no perturbation vectors: round ``t`` redraws
them from ``(seed, t)``.

References
----------
Box, G. E. P. & Muller, M. E. (1958). A note on the generation of random normal deviates.
*Ann. Math. Stat.* 29(2).
O'Neill, M. E. (2014). PCG: a family of simple fast space-efficient statistically good
algorithms for random number generation. HMC-CS-2014-0905.
"""

from __future__ import annotations

import math

import numpy as np

#: Stream ids mixed into the seed sequence so that perturbations and shuffles never share bits.
STREAM_PERTURBATIONS = 0
STREAM_SHUFFLE = 1


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
    """A permutation of ``range(n)`` from the same fixed generator (stream 1): argsort of words."""
    bit_generator = np.random.PCG64(np.random.SeedSequence([seed, round_number, STREAM_SHUFFLE]))
    words = bit_generator.random_raw(n)
    return np.argsort(words, kind="stable")
