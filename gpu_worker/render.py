"""One render-and-update step: load state -> tell -> ask -> render -> write objects -> manifest.

A plain function, :func:`render_round`, that the Celery task calls (and tests and benchmarks
call directly). It is idempotent by construction:

- every object it writes lives under ``round_prefix(campaign_id, round_number)``;
- the manifest is written last, so its presence means the round is complete, and a redelivered
  or duplicated call that finds it returns it without rendering;
- everything it writes is a deterministic function of its inputs (seeded latents, deterministic
  samplers, deterministic encoders), so a re-render after a crash mid-write rewrites the same
  bytes on the same hardware.

Object layout (see ``docs/architecture.md``): ``images/<ii>.png`` full size, ``thumbs/<ii>.webp``
(at most 256 px), ``best.png`` and ``thumbs/best.webp`` (the optimizer's current point, rendered
clean in the same batch), ``state.npz`` (the optimizer state after ``ask``, so that redelivery asks the
same question), ``manifest.json`` (the result dict).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from rankloop.core.errors import CorruptedObject, InvalidInput
from rankloop.core.storage import ObjectStore, round_prefix

log = logging.getLogger(__name__)

THUMB_SIDE = 256
ATTENTION_SEED_OFFSET = 7_919  # keeps the attention image's noise apart from the latent seeds


def render_round(
    store: ObjectStore,
    campaign_id: str,
    round_number: int,
    settings: dict[str, Any],
    previous_state_key: str | None = None,
    consensus: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one round and return its (small) result, also stored as ``manifest.json``.

    Parameters
    ----------
    store : ObjectStore
        Where the previous state is read and every output is written.
    campaign_id, round_number : str, int
        Identify the round; ``round_number == 0`` starts from a seeded Gaussian latent.
    settings : dict
        Campaign settings (``docs/architecture.md``); defaults are filled per generator.
    previous_state_key : str or None
        Key of the previous round's ``state.npz``; required when ``round_number > 0``.
    consensus : dict or None
        The previous round's consensus: ``{"order": [...], "pairwise": [[...]] | None}``. The
        attention image (index n, after the candidates) may appear in it; it is dropped.

    Returns
    -------
    dict
        ``{campaign_id, round_number, kind, state_key, manifest_key, render_seconds, images,
        best, stats}``.
    """
    from gpu_worker.generators import load_generator, resolve_settings
    from rankloop.core import optimizer as opt_module

    campaign_id, round_number = _check_ids(campaign_id, round_number)
    prefix = round_prefix(campaign_id, round_number)
    manifest_key = f"{prefix}/manifest.json"
    if store.exists(manifest_key):
        return load_manifest(store, manifest_key)

    if not isinstance(settings, dict):
        raise InvalidInput("settings must be a JSON object")
    generator = load_generator(settings)
    settings = resolve_settings(settings, generator)

    if round_number == 0:
        if previous_state_key or consensus:
            raise InvalidInput("round 0 takes no previous_state_key or consensus")
        shape = generator.latent_shape(settings)
        x0 = np.random.default_rng(settings["seed"]).standard_normal(shape)
        options = {"shell": generator.shell, **settings["optimizer"]}
        try:
            optimizer = opt_module.RankSGD(
                x0, m=settings["m"], k=settings["k"], seed=settings["seed"], **options
            )
        except TypeError as error:  # an unknown option name
            raise InvalidInput(
                f"bad settings.optimizer {settings['optimizer']!r}: {error}"
            ) from None
    else:
        if not previous_state_key:
            raise InvalidInput(
                f"round {round_number} needs previous_state_key (the state of round {round_number - 1})"
            )
        if not consensus:
            raise InvalidInput(
                f"round {round_number} needs the consensus of round {round_number - 1}"
            )
        state = opt_module.loads_state(store.get(previous_state_key))
        try:
            optimizer = opt_module.RankSGD.from_state_dict(state)
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptedObject(
                f"state {previous_state_key!r} does not decode: {error}"
            ) from error
        expected = tuple(generator.latent_shape(settings))
        if tuple(optimizer.x.shape) != expected:
            raise InvalidInput(
                f"the state's latent has shape {tuple(optimizer.x.shape)} but these settings "
                f"render latents of shape {expected}: keep generator, model and size fixed "
                "within a campaign (fork a new campaign to change them)"
            )
        previous = optimizer.ask()  # the pending proposal stored with the state (same as before)
        _tell(optimizer, consensus, len(previous.points))

    proposal = optimizer.ask()
    points = np.asarray(proposal.points)
    n = len(points)
    # The current best point renders in the same batch: it is the campaign's product (what the
    # owner sees as "best so far") and, degraded, the attention check.
    latents = np.concatenate([points, np.asarray(optimizer.x)[None]], axis=0)

    started = time.perf_counter()
    images = generator.render(latents, settings)
    render_seconds = time.perf_counter() - started
    best_pixels = images.pop()
    if settings["attention_check"]:
        seed = settings["seed"] * 1_000_003 + round_number + ATTENTION_SEED_OFFSET
        images.append(degrade(best_pixels, seed))

    entries = []
    for index, pixels in enumerate(images):
        key, thumb_key = _put_image(store, f"{prefix}/images/{index:02d}.png",
                                    f"{prefix}/thumbs/{index:02d}.webp", pixels)  # fmt: skip
        role = "candidate" if index < n else "attention"
        entries.append({"index": index, "key": key, "thumb_key": thumb_key, "role": role})
    best_key, best_thumb_key = _put_image(
        store, f"{prefix}/best.png", f"{prefix}/thumbs/best.webp", best_pixels
    )

    state_key = f"{prefix}/state.npz"
    store.put(state_key, opt_module.dumps_state(optimizer.state_dict()), "application/x-npz")
    if settings["test_delay_s"] > 0:
        # Test hook: a window between the objects and the manifest, to kill a worker inside.
        time.sleep(settings["test_delay_s"])

    result = {
        "campaign_id": campaign_id,
        "round_number": round_number,
        "kind": str(proposal.kind),
        "state_key": state_key,
        "manifest_key": manifest_key,
        "render_seconds": round(render_seconds, 4),
        "images": entries,
        # The optimizer's current point before this round's ranking: not shown to annotators.
        "best": {"key": best_key, "thumb_key": best_thumb_key},
        "stats": _json_scalars(optimizer.stats),
    }
    store.put(manifest_key, json.dumps(result, sort_keys=True).encode(), "application/json")
    return result


def load_manifest(store: ObjectStore, key: str) -> dict[str, Any]:
    data = store.get(key)
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise CorruptedObject(f"manifest {key!r} is not JSON: {error}") from error
    if not isinstance(manifest, dict) or "images" not in manifest:
        raise CorruptedObject(f"manifest {key!r} lacks the round's images")
    return manifest


def _check_ids(campaign_id: Any, round_number: Any) -> tuple[str, int]:
    campaign_id = str(campaign_id)
    if not campaign_id or "/" in campaign_id or campaign_id in (".", ".."):
        raise InvalidInput(f"campaign_id {campaign_id!r} must be a non-empty name without '/'")
    if isinstance(round_number, bool) or not isinstance(round_number, int) or round_number < 0:
        raise InvalidInput(f"round_number must be an integer >= 0, got {round_number!r}")
    return campaign_id, round_number


def _tell(optimizer: Any, consensus: dict[str, Any], n: int) -> None:
    """Give the optimizer the consensus over its n candidates (attention image dropped)."""
    if not isinstance(consensus, dict):
        raise InvalidInput("consensus must be an object {'order': [...], 'pairwise': ...}")
    pairwise = consensus.get("pairwise")
    if pairwise is not None:
        matrix = np.asarray(pairwise, dtype=float)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < n:
            raise InvalidInput(
                f"consensus.pairwise must be a square matrix over the {n} candidates "
                f"(or {n + 1} with the attention image), got shape {matrix.shape}"
            )
        optimizer.tell(preferences=matrix[:n, :n])
        return
    order = consensus.get("order")
    if not isinstance(order, Sequence) or isinstance(order, str) or not order:
        raise InvalidInput("consensus.order must be a non-empty list of candidate indices")
    flat = []
    for item in order:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= n:
            raise InvalidInput(f"consensus.order holds {item!r}: indices run from 0 to {n - 1}")
        if item < n:  # n is the attention image: not an optimizer point
            flat.append(item)
    optimizer.tell(flat)


def _json_scalars(stats: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in dict(stats or {}).items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        if isinstance(value, bool | int | float | str) or value is None:
            out[str(key)] = value
    return out


# -- images ---------------------------------------------------------------------------------------
def _put_image(store: ObjectStore, key: str, thumb_key: str, pixels: np.ndarray) -> tuple[str, str]:
    store.put(key, encode_png(pixels), "image/png")
    store.put(thumb_key, encode_thumbnail(pixels), "image/webp")
    return key, thumb_key


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: 4x faster than the default 6 for ~25% more bytes; rounds are latency-bound.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_thumbnail(pixels: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    image = Image.fromarray(pixels)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=80, method=2)  # method 2: fastest of 0..6 here
    return buffer.getvalue()


def degrade(pixels: np.ndarray, seed: int) -> np.ndarray:
    """A deliberately damaged copy for the attention check: strong blur, desaturation, noise.

    An honest annotator ranks it last; its noise is seeded, so the bytes are reproducible.
    """
    image = Image.fromarray(pixels)
    radius = max(2.0, max(image.size) / 24.0)
    image = image.filter(ImageFilter.GaussianBlur(radius))
    image = ImageEnhance.Color(image).enhance(0.15)
    image = ImageEnhance.Contrast(image).enhance(0.6)
    noisy = np.asarray(image, dtype=np.float32)
    noisy += np.random.default_rng(seed).normal(0.0, 38.0, noisy.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
