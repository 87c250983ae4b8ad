"""A compositional pattern-producing network (CPPN) generator: pure numpy, no weights to load.

After Picbreeder (Secretan et al., "Picbreeder: evolving pictures collaboratively online",
CHI 2008) and Stanley, "Compositional pattern producing networks" (2007): every pixel's colour
is a small network evaluated at that pixel's coordinates ``(x, y, r = sqrt(x^2 + y^2))``, whose
hidden units use varied activations (sine, Gaussian, tanh, absolute value, ...) that compose into
symmetric, repeating and smooth patterns. Here the network's weights are a fixed linear function
of the latent, so a small move of the latent is a small change of the picture: the smoothness a
rank-based optimiser needs. Images are deterministic given the latent and the size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from gpu_worker.generators import ResolvedSettings
from rankloop.core.contracts import generator_defaults

LATENT_DIM = 64
HIDDEN = 16
LAYERS = 3
N_INPUTS = 5  # x, y, r, bias, and a latent-driven phase input
# A fixed seed for the latent -> weights map: it defines "the" CPPN family and must never change,
# or stored campaigns would render differently.
ARCHITECTURE_SEED = 20080405
# Gains of the first, hidden and (last entry) output layers; the output gain sets how often the
# colour bands wrap. Chosen so that a perturbation of 5% of the latent's norm is a visible but
# related variation, not a new picture.
LAYER_GAINS = (2.2, 1.0, 0.6)
OUTPUT_GAIN = 1.5


def _gaussian(v: np.ndarray) -> np.ndarray:
    np.square(v, out=v)
    np.negative(v, out=v)
    return np.exp(v, out=v)


def _abs_centred(v: np.ndarray) -> np.ndarray:
    np.abs(v, out=v)
    return np.subtract(v, 0.5, out=v)


def _cos2(v: np.ndarray) -> np.ndarray:
    np.multiply(v, 2.0, out=v)
    return np.cos(v, out=v)


# Each works in place on a block of rows (units) and returns it.
ACTIVATIONS = (
    lambda v: np.sin(v, out=v),
    _gaussian,
    lambda v: np.tanh(v, out=v),
    _abs_centred,
    _cos2,
    lambda v: v,
)


def _activations(h: np.ndarray, bounds: list[tuple[int, int, int]]) -> np.ndarray:
    # h is (units, pixels) and units are sorted by activation kind, so each kind acts in place on
    # one contiguous block of rows (column blocks of a (pixels, units) array are 3x slower).
    for kind, start, stop in bounds:
        ACTIVATIONS[kind](h[start:stop])
    return h


class CppnFamily:
    """The fixed latent -> network map. ``latent_dim`` numbers drive every weight."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = HIDDEN, layers: int = LAYERS):
        self.latent_dim, self.hidden, self.layers = latent_dim, hidden, layers
        rng = np.random.default_rng(ARCHITECTURE_SEED)
        shapes = [(N_INPUTS, self.hidden)] + [(self.hidden, self.hidden)] * (self.layers - 1)
        shapes.append((self.hidden, 3))
        # Each weight is a fixed base value plus a latent-driven part, both scaled by
        # 1/sqrt(fan-in) so activations stay O(1) (no high-frequency noise); the first layer's
        # gain sets the spatial frequency of the patterns. Dividing the latent map by sqrt(d)
        # keeps the latent part O(1) for a standard Gaussian latent.
        gains = np.concatenate(
            [
                np.full(
                    a * b,
                    LAYER_GAINS[0 if i == 0 else (2 if i == len(shapes) - 1 else 1)] / np.sqrt(a),
                )
                for i, (a, b) in enumerate(shapes)
            ]
        )
        n_weights = gains.size
        base = rng.normal(0.0, 0.5, n_weights) * gains
        mix = rng.normal(0.0, 1.0 / np.sqrt(self.latent_dim), (n_weights, self.latent_dim))
        kinds = np.sort(rng.integers(0, len(ACTIVATIONS), (self.layers, self.hidden)), axis=1)
        bounds = [
            [
                (int(k), int(np.searchsorted(row, k)), int(np.searchsorted(row, k, "right")))
                for k in np.unique(row)
            ]
            for row in kinds
        ]
        self._shapes = shapes
        self._base = base
        self._mix = mix * gains[:, None]
        self._bounds = bounds

    def weights(self, latent: np.ndarray) -> list[np.ndarray]:
        flat = self._base + self._mix @ latent
        out, start = [], 0
        for a, b in self._shapes:
            out.append(flat[start : start + a * b].reshape(a, b))
            start += a * b
        return out

    def render(self, latent: np.ndarray, width: int, height: int) -> np.ndarray:
        """One image, ``(height, width, 3)`` uint8, from a latent of shape ``(latent_dim,)``."""
        latent = np.asarray(latent, dtype=np.float64).reshape(-1)
        if latent.shape != (self.latent_dim,):
            raise ValueError(f"cppn latent must have {self.latent_dim} numbers, got {latent.size}")
        scale = max(width, height) / 2.0
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        xs = (xs - (width - 1) / 2.0) / scale * 2.0
        ys = (ys - (height - 1) / 2.0) / scale * 2.0
        rs = np.sqrt(xs**2 + ys**2)
        phase = np.full_like(xs, np.tanh(latent[:4].mean()), dtype=np.float32)
        features = np.stack([xs, ys, rs, np.ones_like(xs), phase]).reshape(N_INPUTS, -1)
        # float32 halves the time. One BLAS thread: a multithreaded product sums in an order that
        # depends on the thread count (a worker's forked child runs one thread, a test or
        # `rankloop replay` several), and one flipped rounding changes the bytes.
        weights = [w.astype(np.float32) for w in self.weights(latent)]
        h = features
        with threadpool_limits(limits=1, user_api="blas"):
            for layer in range(self.layers):
                h = _activations(weights[layer].T @ h, self._bounds[layer])
            out = (weights[-1].T @ h).T
        # A smooth squashing to [0, 1]; the sine gives bands of saturated colour, as Picbreeder's.
        rgb = 0.5 + 0.5 * np.sin(OUTPUT_GAIN * out)
        image = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
        return image.reshape(height, width, 3)


class CppnGenerator:
    """The built-in CPU generator: images a person can judge, no model weights."""

    name = "cppn"
    shell = False  # a CPPN latent is not a diffusion noise latent: no Gaussian shell to keep

    def __init__(self) -> None:
        self.family = CppnFamily()
        self.defaults: dict[str, Any] = generator_defaults("cppn")

    def latent_shape(self, settings: ResolvedSettings) -> tuple[int, ...]:
        return (self.family.latent_dim,)

    def render(self, latents: np.ndarray, settings: ResolvedSettings) -> list[np.ndarray]:
        """Render a batch ``(n, latent_dim)`` into ``n`` uint8 RGB arrays."""
        return [
            self.family.render(latent, settings.width, settings.height)
            for latent in np.asarray(latents)
        ]
