"""One render-and-update step: load state -> tell -> ask -> render -> write objects -> manifest.

A plain function, :func:`render_round`, that the Celery task calls (and tests and benchmarks
call directly). It is idempotent by construction:

- every object it writes lives under ``round_prefix(campaign_id, round_number)``;
- the manifest is written last, so its presence means the round is complete, and a redelivered
  or duplicated call that finds it returns it without rendering;
- everything it writes is a deterministic function of its inputs (seeded latents, deterministic
  samplers, deterministic encoders), so a re-render after a crash mid-write rewrites the same
  bytes on the same hardware.

Object layout (see ``docs/architecture.md`` and :mod:`rankloop.core.storage`):
``images/<name>.png`` full size and ``thumbs/<name>.webp`` (at most 256 px) for every image shown
and for the optimizer's current point (rendered clean in the same batch), where ``<name>`` is
:func:`~rankloop.core.storage.image_name` (a keyed digest: no index or role in any URL),
``state.npz`` (the optimizer state after ``ask``, so that redelivery asks the
same question), ``manifest.json`` (the result dict).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from typing import Any

import numpy as np
from PIL import Image

from rankloop.core.contracts import (
    MOVE_ITEMS,
    BestImage,
    ImageRole,
    RenderedImage,
    RenderMessage,
    RenderResult,
    check_round_size,
    parse,
)
from rankloop.core.errors import CorruptedObject, InvalidInput
from rankloop.core.round_step import pixel_effect, shown_items, tell
from rankloop.core.storage import BEST, THUMB_SIDE, ObjectStore, image_name, round_prefix
from rankloop.imaging import degrade

log = logging.getLogger(__name__)

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

    message = parse(
        RenderMessage,
        {
            "campaign_id": _check_campaign_id(campaign_id),
            "round_number": round_number,
            "settings": settings,
            "previous_state_key": previous_state_key,
            "consensus": consensus,
        },
        "render message",
    )
    campaign_id, round_number = message.campaign_id, message.round_number
    prefix = round_prefix(campaign_id, round_number)
    manifest_key = f"{prefix}/manifest.json"
    if store.exists(manifest_key):
        return load_manifest(store, manifest_key)

    generator = load_generator(message.settings)
    resolved = resolve_settings(message.settings, generator)
    # Again here: a checkpoint's native size is known only now, and a message may be old.
    check_round_size(resolved.generator, resolved.m, resolved.width, resolved.height)

    if round_number == 0:
        if message.previous_state_key or message.consensus:
            raise InvalidInput("round 0 takes no previous_state_key or consensus")
        shape = generator.latent_shape(resolved)
        x0 = np.random.default_rng(resolved.seed).standard_normal(shape)
        options = {"shell": generator.shell, **resolved.optimizer}
        optimizer = opt_module.RankSGD(
            x0, m=resolved.m, k=resolved.k, seed=resolved.seed, **options
        )
    else:
        if not message.previous_state_key:
            raise InvalidInput(
                f"round {round_number} needs previous_state_key (the state of round {round_number - 1})"
            )
        if message.consensus is None:
            raise InvalidInput(
                f"round {round_number} needs the consensus of round {round_number - 1}"
            )
        state = opt_module.loads_state(store.get(message.previous_state_key))
        try:
            optimizer = opt_module.RankSGD.from_state_dict(state)
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptedObject(
                f"state {message.previous_state_key!r} does not decode: {error}"
            ) from error
        expected = tuple(generator.latent_shape(resolved))
        if tuple(optimizer.x.shape) != expected:
            raise InvalidInput(
                f"the state's latent has shape {tuple(optimizer.x.shape)} but these settings "
                f"render latents of shape {expected}: keep generator, model and size fixed "
                "within a campaign (fork a new campaign to change them)"
            )
        previous = optimizer.ask()  # the pending proposal stored with the state (same as before)
        tell(optimizer, message.consensus, len(previous.points))

    proposal = optimizer.ask()
    points = np.asarray(proposal.points)
    n = len(points)
    # The current best point renders in the same batch: it is the campaign's product (what the
    # owner sees as "best so far") and, degraded, the attention check.
    latents = np.concatenate([points, np.asarray(optimizer.x)[None]], axis=0)

    started = time.perf_counter()
    images = generator.render(latents, resolved)
    render_seconds = time.perf_counter() - started
    best_pixels = images.pop()
    # How far a latent move moves the pixels here: the optimizer keeps later rounds' candidates
    # visibly different but close (it applies from the next round, so a redelivery renders
    # the same points).
    effect = pixel_effect(points, images, np.asarray(optimizer.x), best_pixels)
    if effect is not None:
        optimizer.note_pixel_effect(effect)
    items = shown_items(n, resolved.attention_check)
    encoded = [(encode_png(pixels), encode_thumbnail(pixels)) for pixels in images]
    if resolved.attention_check:
        seed = resolved.seed * 1_000_003 + round_number + ATTENTION_SEED_OFFSET
        encoded.append(attention_bytes(best_pixels, encoded, seed))

    def name(index: int | str) -> str:
        return image_name(campaign_id, round_number, index, resolved.seed, resolved.image_salt)

    entries = []
    for item, (png, webp) in zip(items, encoded, strict=True):
        key, thumb_key = _put_encoded(store, prefix, name(item.index), png, webp)
        entries.append(
            RenderedImage(index=item.index, key=key, thumb_key=thumb_key, role=ImageRole(item.role))
        )
    best_key, best_thumb_key = _put_image(store, prefix, name(BEST), best_pixels)

    state_key = f"{prefix}/state.npz"
    store.put(state_key, opt_module.dumps_state(optimizer.state_dict()), "application/x-npz")
    if resolved.test_delay_s > 0:
        # Test hook: a window between the objects and the manifest, to kill a worker inside.
        time.sleep(resolved.test_delay_s)

    result = RenderResult(
        campaign_id=campaign_id,
        round_number=round_number,
        kind=str(proposal.kind),
        state_key=state_key,
        manifest_key=manifest_key,
        render_seconds=round(render_seconds, 4),
        torch_threads=_torch_threads() if getattr(generator, "device", None) == "cpu" else None,
        images=entries,
        # The optimizer's current point before this round's ranking: not shown to annotators.
        best=BestImage(key=best_key, thumb_key=best_thumb_key),
        stats={**_json_scalars(optimizer.stats), MOVE_ITEMS: optimizer.move_items()},
    ).model_dump(mode="json")
    store.put(manifest_key, json.dumps(result, sort_keys=True).encode(), "application/json")
    return result


def _torch_threads() -> int | None:
    """torch's CPU thread count (asked of a diffusion render on the CPU: cppn needs no torch,
    and a GPU's kernels do not split their sums by CPU threads)."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def load_manifest(store: ObjectStore, key: str) -> dict[str, Any]:
    data = store.get(key)
    try:
        return RenderResult.model_validate_json(data).model_dump(mode="json")
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise CorruptedObject(f"manifest {key!r} is not a render result: {error}") from error


def _check_campaign_id(campaign_id: Any) -> str:
    campaign_id = str(campaign_id)
    if not campaign_id or "/" in campaign_id or campaign_id in (".", ".."):
        raise InvalidInput(f"campaign_id {campaign_id!r} must be a non-empty name without '/'")
    return campaign_id


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
def _put_image(store: ObjectStore, prefix: str, name: str, pixels: np.ndarray) -> tuple[str, str]:
    return _put_encoded(store, prefix, name, encode_png(pixels), encode_thumbnail(pixels))


def _put_encoded(
    store: ObjectStore, prefix: str, name: str, png: bytes, webp: bytes
) -> tuple[str, str]:
    key, thumb_key = f"{prefix}/images/{name}.png", f"{prefix}/thumbs/{name}.webp"
    store.put(key, png, "image/png")
    store.put(thumb_key, webp, "image/webp")
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


# The grain's search: at most this many encodings of each file. The size grows with the grain
# but not smoothly (WebP drops a faint grain, then its size climbs steeply), so the search
# brackets the target by doubling the grain, then halves the bracket.
GRAIN_STEPS = 24
GRAIN_SCAN = 12  # then at most this many more around where the size steps over the target
GRAIN_MAX = 128.0  # grain strength (standard deviation, 0..255 scale) tried at most


def attention_bytes(
    best: np.ndarray, candidates: list[tuple[bytes, bytes]], seed: int
) -> tuple[bytes, bytes]:
    """The attention image, encoded (full-size PNG, WebP thumbnail), told apart from the
    candidates by its look only.

    Its bytes would otherwise give it away: blur and grey compress far better than a candidate,
    and the noise that used to be added compressed far worse (a bot ranking the largest file
    last passed every check). So each file is :func:`degrade`'s picture with a seeded grain
    whose strength is searched to bring its size to a rank drawn (seeded) at random among the
    candidates' sizes of that file (:func:`size_slot`): same encoder and parameters, same
    dimensions and mode, a size among theirs, at any rank alike. The thumbnail gets its own
    grain at its own size (a grain on the full image would mostly be averaged away by the
    downscale). The candidates' bytes are untouched. Deterministic: a re-render writes the same
    bytes.
    """
    rng = np.random.default_rng(seed)
    look = degrade(best)
    thumb = Image.fromarray(look)
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    png, webp = (
        _sized(pixels, rng, encode, [len(encoded[which]) for encoded in candidates])
        for which, (pixels, encode) in enumerate(
            [(look, encode_png), (np.asarray(thumb), encode_thumbnail)]
        )
    )
    return png, webp


def size_slot(sizes: list[int], u: float, v: float) -> tuple[float, float]:
    """Where the attention file's size goes among the candidates' ``sizes``: a gap between two
    neighbours in size order, or one just below the smallest or above the largest (as wide as
    their mean spacing), chosen uniformly by ``u``, then a point in it by ``v`` (``u``, ``v``
    uniform in [0, 1)). So its size ranks anywhere among theirs alike: ranking files by size,
    whatever rank a bot puts last, it catches the attention image at chance rate, 1 in m + 1.
    Returns ``(target, half)``: the point, and how far from it the gap's ends are (at least
    one byte)."""
    ordered = sorted(sizes) or [0]
    spacing = (ordered[-1] - ordered[0]) / max(len(ordered) - 1, 1) or max(ordered[0] / 100, 1.0)
    ends = [ordered[0] - spacing, *ordered, ordered[-1] + spacing]
    gap = min(int(u * (len(ends) - 1)), len(ends) - 2)
    start, stop = ends[gap], ends[gap + 1]
    target = start + v * (stop - start)
    return target, max(min(target - start, stop - target), 1.0)


def _sized(look: np.ndarray, rng: np.random.Generator, encode: Any, sizes: list[int]) -> bytes:
    """``encode`` of ``look`` plus a seeded grain whose strength brings the size into the gap
    :func:`size_slot` draws among ``sizes`` (else as near its target as the search gets)."""
    target, tolerance = size_slot(sizes, rng.random(), 0.25 + 0.5 * rng.random())
    grain = rng.standard_normal(look.shape).astype(np.float32)
    base = look.astype(np.float32)
    # The best so far: within the gap first, then nearest the target.
    best: tuple[tuple[bool, float], bytes] | None = None

    def miss(strength: float) -> float:
        nonlocal best
        data = encode(np.clip(np.rint(base + strength * grain), 0, 255).astype(np.uint8))
        off = len(data) - target
        score = (abs(off) >= tolerance, abs(off))
        if best is None or score < best[0]:
            best = (score, data)
        return off

    steps = 1
    below, above = 0.0, 1.0
    if miss(below) < 0:  # else the picture alone is as large: no grain
        while steps < GRAIN_STEPS and above < GRAIN_MAX and miss(above) < 0:
            below, above, steps = above, above * 2, steps + 1
        while steps < GRAIN_STEPS and best is not None and best[0][0]:
            middle = (below + above) / 2
            if miss(middle) < 0:
                below = middle
            else:
                above = middle
            steps += 1
        # The size jumps in steps (WebP's above all) and not always upwards: where halving
        # stepped over the gap, a few strengths around the step may land in it.
        for strength in np.linspace(0.9 * below, 1.1 * above, GRAIN_SCAN):
            if best is None or not best[0][0]:
                break
            miss(float(strength))
    assert best is not None
    return best[1]
