"""Generators: (latent batch, settings) -> images, deterministically.

=============  ==========================================================================
``cppn``       pure numpy pattern network (no weights; the embedded default)
``tiny-sd``    the real ``StableDiffusionPipeline`` with tiny random-weight models (CPU tests)
``diffusers``  a checkpoint by hub id or local directory: SD 1.x/2.x, SDXL, SD(XL)-Turbo
=============  ==========================================================================

:func:`load_generator` caches one loaded generator per (name, model, device) in the process,
so a worker loads its model once (after the fork) and keeps it. :func:`resolve_settings` fills
each generator's defaults into the settings a render message carries, validated by
:class:`~rankloop.core.contracts.RenderSettings` (every bound, written once).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from rankloop.core.contracts import (
    DEFAULT_GENERATOR,
    GENERATORS,
    GeneratorName,
    RenderSettings,
    parse,
    with_generator_defaults,
)
from rankloop.core.errors import InvalidInput


class ResolvedSettings(RenderSettings):
    """A render message's :class:`RenderSettings` with its generator's defaults filled in
    (:func:`resolve_settings`): the size is always known here (a checkpoint's native one where
    the campaign set none). ``steps``, ``guidance`` and ``scheduler`` stay ``None`` for
    ``cppn``, which has none; a diffusion generator's defaults fill them."""

    width: int
    height: int


class Generator(Protocol):
    name: str
    shell: bool  # latents live on the Gaussian shell (diffusion noise): keep them there
    # What it renders with where a campaign sets nothing: rankloop.core.contracts'
    # generator_defaults, plus what only the loaded model knows (a checkpoint's native size).
    defaults: dict[str, Any]

    def latent_shape(self, settings: ResolvedSettings) -> tuple[int, ...]: ...
    def render(self, latents: np.ndarray, settings: ResolvedSettings) -> list[np.ndarray]: ...


_cache: dict[tuple[str, str, str], Generator] = {}
_cache_lock = threading.Lock()


def _device_for(name: GeneratorName) -> str:
    if name == DEFAULT_GENERATOR:  # cppn: numpy only
        return "cpu"
    from gpu_worker.generators.diffusion import default_device

    return default_device()


def load_generator(settings: RenderSettings) -> Generator:
    """The generator named by ``settings.generator``, loaded once per process and cached."""
    name = settings.generator
    model = str(settings.model or "") if name == "diffusers" else ""
    device = _device_for(name)
    key = (name, model, device)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(name, model, device)
        return _cache[key]


def _load(name: GeneratorName, model: str, device: str) -> Generator:
    if name == "cppn":
        from gpu_worker.generators.cppn import CppnGenerator

        return CppnGenerator()
    from gpu_worker.generators import diffusion

    if name == "tiny-sd":
        return diffusion.load_tiny_sd(device=device, optimize=False)
    return diffusion.load_pretrained(model, device=device)


def clear_cache() -> None:
    """Forget loaded generators (tests; a worker keeps them for its whole life)."""
    with _cache_lock:
        _cache.clear()


def resolve_settings(
    settings: RenderSettings | Mapping[str, Any], generator: Generator
) -> ResolvedSettings:
    """``settings`` (a render message's, validated by :class:`RenderSettings` with every bound;
    a plain mapping is validated here) with the generator's defaults filled in.

    Raises
    ------
    InvalidInput
        A value of the wrong type or out of range (from :class:`RenderSettings`); the message
        names the field.
    """
    if not isinstance(settings, RenderSettings):
        if not isinstance(settings, Mapping):
            raise InvalidInput("settings must be a JSON object")
        settings = parse(RenderSettings, settings, "render settings")
    # The same rule the coordinator applied when the campaign was created (a message from an
    # older coordinator may still leave fields unset), then what only the model knows.
    filled = with_generator_defaults(settings.model_dump())
    for field, value in generator.defaults.items():
        if filled.get(field) is None:
            filled[field] = value
    return parse(ResolvedSettings, filled, "render settings")


__all__ = [
    "GENERATORS",
    "Generator",
    "ResolvedSettings",
    "clear_cache",
    "load_generator",
    "resolve_settings",
]
