"""Generators: (latent batch, settings) -> images, deterministically.

=============  ==========================================================================
``cppn``       pure numpy pattern network (no weights; the embedded default)
``tiny-sd``    the real ``StableDiffusionPipeline`` with tiny random-weight models (CPU tests)
``diffusers``  a checkpoint by hub id or local directory: SD 1.x/2.x, SDXL, SD(XL)-Turbo
=============  ==========================================================================

:func:`load_generator` caches one loaded generator per (name, model, device) in the process,
so a worker loads its model once (after the fork) and keeps it. :func:`resolve_settings` fills
each generator's defaults and rejects bad settings with :class:`~rankloop.core.errors.InvalidInput`.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from rankloop.core.contracts import (
    DEFAULT_GENERATOR,
    DEFAULT_M,
    GENERATORS,
    MAX_GUIDANCE,
    MAX_M,
    MAX_SIDE,
    MAX_STEPS,
    MIN_M,
    MIN_SIDE,
    with_generator_defaults,
)
from rankloop.core.errors import InvalidInput, ModelUnavailable


class Generator(Protocol):
    name: str
    shell: bool  # latents live on the Gaussian shell (diffusion noise): keep them there
    # What it renders with where a campaign sets nothing: rankloop.core.contracts'
    # generator_defaults, plus what only the loaded model knows (a checkpoint's native size).
    defaults: dict[str, Any]

    def latent_shape(self, settings: dict[str, Any]) -> tuple[int, ...]: ...
    def render(self, latents: np.ndarray, settings: dict[str, Any]) -> list[np.ndarray]: ...


_cache: dict[tuple[str, str, str], Generator] = {}
_cache_lock = threading.Lock()


def _device_for(name: str) -> str:
    if name == DEFAULT_GENERATOR:  # cppn: numpy only
        return "cpu"
    from gpu_worker.generators.diffusion import default_device

    return default_device()


def load_generator(settings: dict[str, Any]) -> Generator:
    """The generator named by ``settings["generator"]``, loaded once per process and cached."""
    name = _generator_name(settings)
    model = str(settings.get("model") or "") if name == "diffusers" else ""
    device = _device_for(name)
    key = (name, model, device)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(name, model, device)
        return _cache[key]


def _load(name: str, model: str, device: str) -> Generator:
    if name == "cppn":
        from gpu_worker.generators.cppn import CppnGenerator

        return CppnGenerator()
    from gpu_worker.generators import diffusion

    if name == "tiny-sd":
        return diffusion.load_tiny_sd(device=device, optimize=False)
    return diffusion.load_pretrained(model, device=device)


def _generator_name(settings: dict[str, Any]) -> str:
    name = settings.get("generator") or DEFAULT_GENERATOR
    if name not in GENERATORS:
        raise ModelUnavailable(f"unknown generator {name!r}: use one of {', '.join(GENERATORS)}")
    return str(name)


def clear_cache() -> None:
    """Forget loaded generators (tests; a worker keeps them for its whole life)."""
    with _cache_lock:
        _cache.clear()


def resolve_settings(settings: dict[str, Any], generator: Generator) -> dict[str, Any]:
    """``settings`` with the generator's defaults filled in, validated.

    Raises
    ------
    InvalidInput
        A value of the wrong type or out of range; the message names the field and the fix.
    """
    if not isinstance(settings, dict):
        raise InvalidInput("settings must be a JSON object")
    _generator_name(settings)
    # The same rule the coordinator applied when the campaign was created (a message from an
    # older coordinator may still leave fields unset), then what only the model knows.
    out = with_generator_defaults(settings)
    for field, value in generator.defaults.items():
        if out.get(field) is None:
            out[field] = value
    out["prompt"] = str(out.get("prompt") or "")
    out["negative_prompt"] = str(out.get("negative_prompt") or "")
    out["seed"] = _int(out, "seed", 0, minimum=0)
    out["m"] = _int(out, "m", DEFAULT_M, minimum=MIN_M, maximum=MAX_M)
    k = out.get("k")
    out["k"] = None if k is None else _int(out, "k", None, minimum=1, maximum=out["m"])
    out["width"] = _int(out, "width", None, minimum=MIN_SIDE, maximum=MAX_SIDE)
    out["height"] = _int(out, "height", None, minimum=MIN_SIDE, maximum=MAX_SIDE)
    if out.get("steps") is not None:
        out["steps"] = _int(out, "steps", None, minimum=1, maximum=MAX_STEPS)
    if out.get("guidance") is not None:
        try:
            out["guidance"] = float(out["guidance"])
        except (TypeError, ValueError):
            raise InvalidInput(
                f"settings.guidance must be a number, got {out['guidance']!r}"
            ) from None
        if not 0.0 <= out["guidance"] <= MAX_GUIDANCE:
            raise InvalidInput(
                f"settings.guidance must be in [0, {MAX_GUIDANCE:g}], got {out['guidance']}"
            )
    out["attention_check"] = bool(out.get("attention_check", True))
    optimizer = out.get("optimizer") or {}
    if not isinstance(optimizer, dict):
        raise InvalidInput("settings.optimizer must be an object of RankSGD options")
    out["optimizer"] = optimizer
    delay = out.get("test_delay_s") or 0.0
    try:
        out["test_delay_s"] = float(delay)
    except (TypeError, ValueError):
        raise InvalidInput("settings.test_delay_s must be a number of seconds") from None
    return out


def _int(
    settings: dict[str, Any],
    field: str,
    default: int | None,
    *,
    minimum: int,
    maximum: int | None = None,
) -> int:
    value = settings.get(field)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InvalidInput(f"settings.{field} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise InvalidInput(f"settings.{field} must be >= {minimum}{upper}, got {value}")
    return value


__all__ = ["GENERATORS", "Generator", "clear_cache", "load_generator", "resolve_settings"]
