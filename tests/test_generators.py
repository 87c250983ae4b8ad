"""Generators in-process: determinism, shapes, the real pipeline class, settings validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gpu_worker.generators import ResolvedSettings, load_generator, resolve_settings
from gpu_worker.render import degrade, encode_png, encode_thumbnail
from rankloop.core.contracts import RenderSettings
from rankloop.core.errors import InvalidInput, ModelUnavailable, OutOfResources


def load(**settings):
    return load_generator(RenderSettings(**settings))


@pytest.fixture(scope="module")
def cppn():
    return load(generator="cppn")


@pytest.fixture(scope="module")
def tiny():
    import torch

    # Two cores are shared by the whole test run; one thread is faster under contention.
    torch.set_num_threads(1)
    return load(generator="tiny-sd")


def latents(generator, settings, n, seed=0):
    shape = generator.latent_shape(settings)
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def test_generators_are_cached_per_process(cppn, tiny):
    assert load(generator="cppn") is cppn
    assert load(generator="tiny-sd", prompt="other") is tiny


def test_cppn_is_deterministic_and_varied(cppn):
    settings = resolve_settings({"generator": "cppn", "width": 80, "height": 48}, cppn)
    z = latents(cppn, settings, 4)
    first, second = cppn.render(z, settings), cppn.render(z, settings)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert first[0].shape == (48, 80, 3) and first[0].dtype == np.uint8
    assert len({image.tobytes() for image in first}) == 4
    # A colourful picture, not flat and not noise: neighbouring pixels are close.
    image = first[0].astype(float)
    assert image.std() > 20
    assert np.abs(np.diff(image, axis=1)).mean() < 0.25 * image.std()


def test_cppn_small_moves_make_small_changes(cppn):
    settings = resolve_settings({"generator": "cppn", "width": 64, "height": 64}, cppn)
    rng = np.random.default_rng(3)
    z = rng.standard_normal(64)
    direction = rng.standard_normal(64)
    base, near, far = cppn.render(
        np.stack([z, z + 0.05 * direction, z + 1.0 * direction]), settings
    )
    near_change = np.abs(base.astype(float) - near).mean()
    far_change = np.abs(base.astype(float) - far).mean()
    assert 0 < near_change < far_change / 3


def test_tiny_sd_is_the_real_pipeline_offline(tiny):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    assert isinstance(tiny.pipe, StableDiffusionPipeline)
    settings = resolve_settings({"generator": "tiny-sd"}, tiny)
    assert isinstance(tiny._scheduler(settings.scheduler), DDIMScheduler)
    ids = tiny.pipe.tokenizer("a red fox", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == tiny.pipe.tokenizer.bos_token_id
    assert tiny.latent_shape(settings) == (4, 16, 16)


def test_tiny_sd_same_inputs_same_bytes(tiny):
    settings = resolve_settings({"generator": "tiny-sd", "prompt": "a red fox"}, tiny)
    z = latents(tiny, settings, 3)
    first, second = tiny.render(z, settings), tiny.render(z, settings)
    assert [encode_png(i) for i in first] == [encode_png(i) for i in second]
    assert first[0].shape == (64, 64, 3)
    # The image depends on the prompt, and on each latent.
    other = tiny.render(z, settings.model_copy(update={"prompt": "a blue whale"}))
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], first[1])


def test_tiny_sd_batch_split_on_out_of_memory(tiny, monkeypatch):
    """The OOM path: a batch that does not fit is split in halves; one image that does not fit
    is a clear error. (There is no GPU here: the batch call raises CUDA's OOM error itself.)"""
    import torch

    settings = resolve_settings({"generator": "tiny-sd"}, tiny)
    z = latents(tiny, settings, 5)
    whole = tiny.render(z, settings)
    real_batch = tiny._render_batch
    sizes = []

    def limited(batch, settings_):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return real_batch(batch, settings_)

    monkeypatch.setattr(tiny, "_render_batch", limited)
    split = tiny.render(z, settings)
    assert sizes == [5, 2, 3, 1, 2]
    assert len(split) == 5
    # Per-image results match the one-batch render up to float rounding of batched kernels.
    assert all(np.abs(a.astype(int) - b).max() <= 2 for a, b in zip(whole, split, strict=True))

    def always_out_of_memory(*_):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")

    monkeypatch.setattr(tiny, "_render_batch", always_out_of_memory)
    with pytest.raises(OutOfResources, match="lower width/height"):
        tiny.render(z[:1], settings)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"m": 1}, "m: Input should be greater than or equal to 2"),
        ({"m": 33}, "m: Input should be less than or equal to 32"),
        ({"m": "eight"}, "m: Input should be a valid integer"),
        ({"m": 7.5}, "m: Input should be a valid integer"),
        ({"width": 0}, "width: Input should be greater than or equal to 16"),
        ({"height": 4096}, "height: Input should be less than or equal to 2048"),
        ({"steps": 0}, "steps: Input should be greater than or equal to 1"),
        ({"guidance": "lots"}, "guidance: Input should be a valid number"),
        ({"guidance": 51}, "guidance: Input should be less than or equal to 50"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"k": 9, "m": 8}, "k=9 exceeds m=8"),
        ({"optimizer": [1, 2]}, "optimizer: Input should be a valid dictionary"),
        ({"generator": "dall-e"}, "generator: Input should be 'cppn', 'tiny-sd' or 'diffusers'"),
        ({"scheduler": "dpm"}, "unknown scheduler"),
        ({"width": 62}, "width: Input should be a multiple of 8"),
    ],
)
def test_bad_settings_name_the_field(tiny, settings, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        resolved = resolve_settings({"generator": "tiny-sd", **settings}, tiny)
        tiny.latent_shape(resolved)
        tiny._scheduler(resolved.scheduler)


def test_defaults_are_filled_per_generator(cppn, tiny):
    resolved = resolve_settings(RenderSettings(), cppn)
    assert isinstance(resolved, ResolvedSettings)
    assert (resolved.width, resolved.height, resolved.steps, resolved.guidance) == (
        256,
        256,
        None,
        None,
    )
    resolved = resolve_settings({"generator": "tiny-sd", "steps": 3}, tiny)
    assert (resolved.steps, resolved.scheduler, resolved.width) == (3, "ddim", 64)
    assert resolved.guidance == 7.5 and isinstance(resolved.guidance, float)
    assert resolved.attention_check is True and resolved.m == 8


def test_resolving_keeps_every_field_the_message_set(tiny):
    sent = RenderSettings(
        generator="tiny-sd", prompt="a fox", m=4, k=2, seed=9, image_salt="s", test_delay_s=0.5
    )
    resolved = resolve_settings(sent, tiny)
    assert resolved.model_dump(exclude={"width", "height", "steps", "guidance", "scheduler"}) == (
        sent.model_dump(exclude={"width", "height", "steps", "guidance", "scheduler"})
    )


def test_an_unknown_model_is_model_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKLOOP_MODELS", str(tmp_path / "missing"))
    with pytest.raises(ModelUnavailable, match="cannot load model"):
        load(generator="diffusers", model=str(tmp_path / "missing"))
    with pytest.raises(InvalidInput, match=r"settings\.model is required"):
        load(generator="diffusers")


def test_the_worker_loads_only_a_listed_model_and_never_tells_paths_apart(tmp_path, monkeypatch):
    """settings.model opens a path or a hub id: the worker refuses any model its operator did
    not list (RANKLOOP_MODELS), before touching the disk or the network; and a listed one that
    does not load fails with one text, whether its folder is missing, empty or a file."""
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a pipeline")
    missing = tmp_path / "missing"

    def error(model: str) -> str:
        with pytest.raises(ModelUnavailable) as caught:
            load(generator="diffusers", model=model)
        return str(caught.value).replace(repr(model), "MODEL")

    monkeypatch.delenv("RANKLOOP_MODELS", raising=False)
    refused = {error(m) for m in ("/root", "/etc/passwd", str(missing), str(empty), "org/x")}
    assert len(refused) == 1, refused  # one text: no path told apart
    (text,) = refused
    assert "not on this server's model list (RANKLOOP_MODELS" in text and "offers none" in text

    listed = [str(missing), str(empty), str(a_file), "/root"]
    monkeypatch.setenv("RANKLOOP_MODELS", ", ".join(listed))
    unloadable = {error(m) for m in listed}
    assert len(unloadable) == 1, unloadable
    assert "cannot load model MODEL: it is on the model list" in unloadable.pop()
    # Still refused, naming what is offered, whatever exists on disk.
    assert "the models offered are" in error("/etc/passwd")


def test_attention_image_is_degraded_and_reproducible(cppn):
    settings = resolve_settings({"generator": "cppn", "width": 128, "height": 128}, cppn)
    (image,) = cppn.render(latents(cppn, settings, 1), settings)
    bad = degrade(image)
    assert np.array_equal(bad, degrade(image))
    assert bad.shape == image.shape

    def saturation(pixels):
        pixels = pixels.astype(float)
        return (pixels.max(axis=2) - pixels.min(axis=2)).mean()

    def edges(pixels):  # structure at the picture's scale, measured after a light denoise
        from PIL import Image, ImageFilter

        smooth = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(3)), float)
        return np.abs(np.diff(smooth, axis=0)).mean()

    assert saturation(bad) < 0.6 * saturation(image)
    assert edges(bad) < 0.6 * edges(image)


def test_the_attention_image_is_told_apart_by_its_look_only(tmp_path):
    """Rendered by the real worker (cppn) over several seeds and sizes: the attention image's
    full-size PNG and WebP thumbnail have the candidates' format, mode, dimensions and chunk
    layout, and a size among theirs (within their range widened by one mean spacing) at a rank
    that varies, so a bot that ranks the files by size passes no more often than chance allows;
    the candidates' bytes are those of a round rendered without the attention check."""
    from io import BytesIO

    from PIL import Image

    from gpu_worker.render import render_round
    from rankloop.core.storage import LocalStore
    from rankloop.simulation.http_annotators import obvious_outliers, preference_cost

    def header(data: bytes) -> tuple[Any, ...]:
        """Format, mode, dimensions, metadata and the kinds of chunks (PNG) or the bitstream
        (WebP: ``VP8 `` lossy, ``VP8L`` lossless, ``VP8X`` extended)."""
        image = Image.open(BytesIO(data))
        kinds: set[bytes] = set()
        if image.format == "PNG":
            at = 8
            while at < len(data):
                length = int.from_bytes(data[at : at + 4], "big")
                kinds.add(data[at + 4 : at + 8])
                at += 12 + length
        else:
            kinds.add(data[12:16])
        return image.format, image.mode, image.size, tuple(sorted(image.info)), tuple(sorted(kinds))

    m = 6
    spotted = 0
    ranks = []  # the attention file's rank by size among the m + 1 files, 0 = smallest
    cases = [(64, 0), (96, 1), (96, 2), (128, 3), (128, 4), (160, 5), (192, 6), (256, 7)]
    for side, seed in cases:
        settings = {"generator": "cppn", "m": m, "seed": seed, "width": side, "height": side}
        store = LocalStore(tmp_path / f"{side}-{seed}")
        result = render_round(store, "c", 0, settings)
        files = [(store.get(e["key"]), store.get(e["thumb_key"])) for e in result["images"]]
        attention = next(i for i, e in enumerate(result["images"]) if e["role"] == "attention")
        for which in (0, 1):  # the full-size PNG, the thumbnail
            size = len(files[attention][which])
            candidates = sorted(len(f[which]) for i, f in enumerate(files) if i != attention)
            # (WebP's size moves in steps of a few percent on a small thumbnail: at least 2%.)
            slack = max((candidates[-1] - candidates[0]) / (m - 1), 0.02 * candidates[0])
            assert candidates[0] - slack <= size <= candidates[-1] + slack, (side, seed, which)
            assert {header(f[which]) for f in files} == {header(files[0][which])}
            ranks.append(sum(c < size for c in candidates))
        # The simulated honest annotator (rankloop up --simulate) still sets it apart by its look.
        costs = [preference_cost(f[1]) for f in files]
        spotted += obvious_outliers(costs) == [attention]
        # The candidates' bytes are those of a round rendered without the attention check.
        plain = LocalStore(tmp_path / f"{side}-{seed}-plain")
        without = render_round(plain, "c", 0, {**settings, "attention_check": False})
        assert [(plain.get(e["key"]), plain.get(e["thumb_key"])) for e in without["images"]] == [
            f for i, f in enumerate(files) if i != attention
        ]
    # A bot that ranks by size puts one rank last (the largest, say: before, the attention file
    # was the largest every time). At chance it is right 1 time in m + 1, about 2 of these 16
    # files; no rank may catch it in half of them.
    counts = [ranks.count(rank) for rank in range(m + 1)]
    assert max(counts) <= len(ranks) // 2, counts
    assert len({rank for rank in ranks}) >= 3, counts
    # All but one: seed 3's candidates are bluish, and the grey copy is nearer the simulated
    # judge's orange than they are (so it was before the grain, too).
    assert spotted >= len(cases) - 1


def test_thumbnail_is_small_webp():
    from io import BytesIO

    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (512, 384, 3), dtype=np.uint8)
    thumb = Image.open(BytesIO(encode_thumbnail(pixels)))
    assert thumb.format == "WEBP" and thumb.size == (192, 256)


@pytest.mark.slow
def test_bench_render_quick_writes_a_table_and_json(tmp_path):
    import json

    from click.testing import CliRunner

    from rankloop.bench.render import render_command

    out = tmp_path / "render.json"
    result = CliRunner().invoke(render_command, ["--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["generator"] for row in rows] == ["cppn", "tiny-sd"]
    assert all(row["images"] == 9 and row["round_s"] > 0 for row in rows)
    assert "tiny-sd" in result.output and "round_s" in result.output


@pytest.mark.gpu
def test_bench_render_cuda_quick_matches_eager(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    import json

    from click.testing import CliRunner

    from rankloop.bench.render import render_command

    out = tmp_path / "render.json"
    result = CliRunner().invoke(render_command, ["--device", "cuda", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    eager, optimized = json.loads(out.read_text())["rows"]
    assert (eager["path"], optimized["path"]) == ("eager", "optimized")
    assert optimized["max_abs_diff"] < 0.05  # fp16 tolerance on the [0, 1] image scale


@pytest.mark.gpu
def test_cuda_generator_uses_the_optimised_path():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from gpu_worker.generators.diffusion import load_tiny_sd

    generator = load_tiny_sd(device="cuda", optimize=None)
    assert generator.optimized and generator.dtype == torch.float32
    settings = resolve_settings({"generator": "tiny-sd"}, generator)
    images = generator.render(latents(generator, settings, 3), settings)
    assert len(images) == 3 and images[0].shape == (64, 64, 3)


# -- render_round in-process (the task's body) ---------------------------------------------------
def test_render_round_rewrites_the_same_objects_after_a_crash(tmp_path):
    from gpu_worker.render import render_round
    from rankloop.core.storage import LocalStore

    store = LocalStore(tmp_path)
    settings = {"generator": "cppn", "m": 4, "seed": 2, "width": 48, "height": 48}
    first = render_round(store, "c", 0, settings)
    objects = {key: store.get(key) for key in store.list("campaigns/c/")}
    assert render_round(store, "c", 0, settings) == first  # complete: manifest returned as is
    store.delete(first["manifest_key"])  # as if the worker died before the manifest
    again = render_round(store, "c", 0, settings)
    assert {key: store.get(key) for key in store.list("campaigns/c/") if "manifest" not in key} == {
        key: data for key, data in objects.items() if "manifest" not in key
    }
    assert {**again, "render_seconds": 0} == {**first, "render_seconds": 0}


def test_render_round_rejects_inconsistent_requests(tmp_path):
    from gpu_worker.render import render_round
    from rankloop.core.errors import NotFound
    from rankloop.core.storage import LocalStore

    store = LocalStore(tmp_path)
    settings = {"generator": "cppn", "m": 4, "width": 48, "height": 48}
    r0 = render_round(store, "c", 0, settings)
    with pytest.raises(InvalidInput, match="needs previous_state_key"):
        render_round(store, "c", 1, settings, None, {"order": [0]})
    with pytest.raises(InvalidInput, match="needs the consensus"):
        render_round(store, "c", 1, settings, r0["state_key"], None)
    with pytest.raises(InvalidInput, match="indices run from 0 to 3"):
        render_round(store, "c", 1, settings, r0["state_key"], {"order": [0, 7]})
    with pytest.raises(NotFound):
        render_round(store, "c", 1, settings, "campaigns/c/rounds/0000/nope.npz", {"order": [0]})
    with pytest.raises(InvalidInput, match="latent has shape"):
        tiny_settings = {"generator": "tiny-sd", "m": 4}
        render_round(store, "c", 1, tiny_settings, r0["state_key"], {"order": [0]})
    with pytest.raises(InvalidInput, match="campaign_id"):
        render_round(store, "a/b", 0, settings)
    assert not store.exists("campaigns/c/rounds/0001/manifest.json")


def test_default_scheduler_is_never_stochastic(tiny, monkeypatch):
    from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    assert isinstance(tiny._scheduler("default"), DDIMScheduler)  # tiny-sd ships DDIM
    # A checkpoint that ships an ancestral sampler (SDXL-Turbo does) gets plain Euler instead.
    monkeypatch.setattr(tiny, "_base_scheduler_class", EulerAncestralDiscreteScheduler)
    monkeypatch.setattr(tiny, "_schedulers", {})
    scheduler = tiny._scheduler("default")
    assert type(scheduler) is EulerDiscreteScheduler
    settings = resolve_settings({"generator": "tiny-sd", "scheduler": "default", "steps": 2}, tiny)
    z = latents(tiny, settings, 2)
    first, second = tiny.render(z, settings), tiny.render(z, settings)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_diffusers_generator_loads_a_local_pipeline_directory(tiny, tmp_path, monkeypatch):
    """The checkpoint path (AutoPipelineForText2Image.from_pretrained) on a saved tiny-sd:
    offline, and the same weights render the same images as tiny-sd itself."""
    monkeypatch.setenv("RANKLOOP_MODELS", str(tmp_path / "pipe"))
    tiny.pipe.scheduler = tiny._scheduler("ddim")  # (earlier tests may have left Euler in place)
    tiny.pipe.save_pretrained(tmp_path / "pipe")
    settings = {"generator": "diffusers", "model": str(tmp_path / "pipe"), "steps": 3}
    loaded = load_generator(RenderSettings(**settings))
    assert type(loaded.pipe).__name__ == "StableDiffusionPipeline"
    resolved = resolve_settings(settings, loaded)
    assert (resolved.width, resolved.guidance, resolved.scheduler) == (64, 7.5, "ddim")
    z = latents(loaded, resolved, 2)
    same = resolve_settings({"generator": "tiny-sd", "steps": 3}, tiny)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(loaded.render(z, resolved), tiny.render(z, same), strict=True)
    )


def test_the_warm_up_renders_its_settings_and_logs_a_bad_one(monkeypatch, caplog):
    """RANKLOOP_WARMUP is parsed as the render message's settings; a bad one is logged, never
    raised (it must not crash-loop the worker pool)."""
    import logging
    from types import SimpleNamespace

    from gpu_worker import tasks

    caplog.set_level(logging.INFO, logger=tasks.log.name)
    warmup = {"generator": "cppn", "m": 2, "width": 32, "height": 32}
    monkeypatch.setattr(tasks, "load_settings", lambda: SimpleNamespace(warmup=warmup))
    tasks._warm_up()
    assert "warm-up of cppn done" in caplog.text
    warmup = {"generator": "dall-e"}
    tasks._warm_up()
    assert "warm-up failed" in caplog.text and "generator: Input should be" in caplog.text
