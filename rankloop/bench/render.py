"""``rankloop bench render``: seconds per round of rendering.

CPU (default): one ``cppn`` and one ``tiny-sd`` round of m = 8 exactly as the worker runs it
(``render_round`` into a local store: tell/ask, one batch of m + 1 images (the candidates and the
current best, whose degraded copy is the attention check), PNG + WebP encoding, state, manifest), warm, after a warm-up round; the median of
``--repeats`` rounds.

CUDA (``--device cuda``): the SD-1.5 architecture with random weights built from the JSON
configs shipped in ``gpu_worker/tiny_sd/sd15`` (speed does not depend on weight values; nothing is
downloaded), 512 x 512, 25 DDIM steps, guidance 7.5, fp16, one batch of m images. The eager
diffusers pipeline and the worker's optimised path (:meth:`DiffusionGenerator.optimize`, the
path a CUDA worker uses by default) run in the SAME process on the same weights and latents;
the first optimised call (compilation, or loading from the persistent inductor cache) is reported
separately, and the optimised images are compared with the eager ones (max abs difference on the
[0, 1] scale). Then m = 4 and m = 16, SDXL at 1024 x 1024 and the SD-Turbo architecture at 1 and
4 steps, each with peak GPU memory.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

from rankloop.bench.report import format_table, save_results

GPU_SUITES = ("sd15", "batch", "sdxl", "turbo")


@click.command("render")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed rounds per row.")
@click.option("--quick", is_flag=True, help="A short smoke run (fewer repeats, smaller GPU suite).")
@click.option(
    "--suite",
    "suites",
    multiple=True,
    type=click.Choice(GPU_SUITES),
    help="CUDA only: which rows to run (default: all; --quick: sd15 at m=2, 4 steps).",
)
@click.option(
    "--compile-mode",
    default=None,
    help="torch.compile mode of the optimised path (default: RANKLOOP_COMPILE_MODE or 'default').",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads for torch (default: torch's choice, or OMP_NUM_THREADS). On a busy "
    "machine 1 thread avoids oversubscription.",
)
@click.option("--out", default="bench-results/render.json", show_default=True)
def render_command(
    device: str,
    repeats: int,
    quick: bool,
    suites: tuple[str, ...],
    compile_mode: str | None,
    threads: int | None,
    out: str,
) -> None:
    """Seconds per render round: cppn and tiny-sd on the CPU; eager vs optimised SD on CUDA."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    if quick:
        repeats = min(repeats, 2)
    if device == "cpu":
        rows = cpu_rows(repeats)
        columns = ["generator", "m", "images", "size", "round_s", "render_s", "min_round_s"]
    else:
        rows = cuda_rows(repeats, suites or (("quick",) if quick else GPU_SUITES), compile_mode)
        columns = [
            "model",
            "path",
            "m",
            "size",
            "steps",
            "seconds",
            "min_s",
            "first_call_s",
            "max_abs_diff",
            "speedup",
            "peak_gib",
        ]
    click.echo(format_table(rows, columns))
    path = save_results(out, "render", rows, device=device, repeats=repeats, **_machine(device))
    click.echo(f"saved {path}")


def _machine(device: str) -> dict[str, Any]:
    import torch

    meta: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        import diffusers

        meta["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
    return meta


# -- CPU --------------------------------------------------------------------------------------
def cpu_rows(repeats: int) -> list[dict[str, Any]]:
    from gpu_worker.render import render_round
    from rankloop.core.storage import LocalStore

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        store = LocalStore(directory)
        for generator in ("cppn", "tiny-sd"):
            settings = {"generator": generator, "prompt": "a lighthouse at dusk", "m": 8}
            round_times, render_times = [], []
            result: dict[str, Any] = {}
            for attempt in range(repeats + 1):  # the first round warms up (loads the model)
                started = time.perf_counter()
                result = render_round(store, f"bench-{uuid.uuid4().hex[:8]}", 0, settings)
                if attempt:
                    round_times.append(time.perf_counter() - started)
                    render_times.append(result["render_seconds"])
            first = store.get(result["images"][0]["key"])
            from io import BytesIO

            from PIL import Image

            width, height = Image.open(BytesIO(first)).size
            rows.append(
                {
                    "generator": generator,
                    "m": 8,
                    "images": len(result["images"]),
                    "size": f"{width}x{height}",
                    "round_s": statistics.median(round_times),
                    "render_s": statistics.median(render_times),
                    "min_round_s": min(round_times),
                }
            )
    return rows


# -- CUDA -------------------------------------------------------------------------------------
def cuda_rows(
    repeats: int, suites: tuple[str, ...], compile_mode: str | None
) -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        raise click.UsageError("--device cuda needs a CUDA GPU and a CUDA build of torch")
    rows: list[dict[str, Any]] = []
    sd15: dict[str, Any] = {"size": 512, "steps": 25, "guidance": 7.5}

    def free() -> None:  # drop one architecture's weights before loading the next
        import gc

        gc.collect()
        torch.cuda.empty_cache()

    if "quick" in suites:
        rows += compare_paths(
            "sd15", ms=(2,), repeats=1, compile_mode=compile_mode, size=512, steps=4, guidance=7.5
        )
        return rows
    if "sd15" in suites or "batch" in suites:
        ms = (8,) + ((4, 16) if "batch" in suites else ())
        rows += compare_paths("sd15", ms=ms, repeats=repeats, compile_mode=compile_mode, **sd15)
    free()
    if "sdxl" in suites:
        rows += compare_paths(
            "sdxl",
            ms=(8,),
            repeats=max(1, repeats // 2),
            compile_mode=compile_mode,
            size=1024,
            steps=25,
            guidance=7.5,
        )
    free()
    if "turbo" in suites:
        for steps in (1, 4):
            rows += compare_paths(
                "sd_turbo",
                ms=(8,),
                repeats=repeats,
                compile_mode=compile_mode,
                size=512,
                steps=steps,
                guidance=0.0,
                scheduler="default",
            )
    return rows


def compare_paths(
    architecture: str,
    *,
    ms: tuple[int, ...],
    repeats: int,
    compile_mode: str | None,
    size: int,
    steps: int,
    guidance: float,
    scheduler: str = "ddim",
    device: str = "cuda",
    dtype: Any = None,
) -> list[dict[str, Any]]:
    """Eager pipeline vs the worker's optimised path, same process, weights and latents.

    ``architecture`` names a config directory under ``gpu_worker/tiny_sd`` (``sd15``, ``sdxl``,
    ``sd_turbo``, or ``.`` for tiny-sd itself, which lets the path be exercised on the CPU).
    """
    import numpy as np
    import torch

    from gpu_worker.generators import ResolvedSettings
    from gpu_worker.generators.diffusion import DiffusionGenerator, build_pipeline_from_configs
    from gpu_worker.tiny_sd import CONFIG_DIR

    cuda = device.startswith("cuda")
    dtype = dtype or (torch.float16 if cuda else torch.float32)
    pipe = build_pipeline_from_configs(Path(CONFIG_DIR) / architecture, device=device, dtype=dtype)
    generator = DiffusionGenerator(
        pipe, name=architecture, defaults={}, device=device, optimize=False
    )
    settings = ResolvedSettings(
        generator="diffusers",
        prompt="a lighthouse at dusk, detailed oil painting",
        width=size,
        height=size,
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
    )
    shape = generator.latent_shape(settings)
    latents = {
        m: np.random.default_rng(m).standard_normal((m, *shape)).astype(np.float32) for m in ms
    }
    label = {"sd15": "SD-1.5", "sdxl": "SDXL", "sd_turbo": "SD-Turbo (2.1)"}.get(
        architecture, architecture
    )

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timed(m: int) -> tuple[list[float], np.ndarray]:
        times, images = [], np.empty(0)
        for _ in range(max(1, repeats)):
            sync()
            started = time.perf_counter()
            images = generator.render_float(latents[m], settings)
            sync()
            times.append(time.perf_counter() - started)
        return times, images

    def peak() -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    rows, eager = [], {}
    for m in ms:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        generator.render_float(latents[m], settings)  # warm-up
        first = time.perf_counter() - started
        times, images = timed(m)
        eager[m] = (statistics.median(times), images)
        rows.append(
            {
                "model": label,
                "path": "eager",
                "m": m,
                "size": f"{size}x{size}",
                "steps": steps,
                "seconds": statistics.median(times),
                "min_s": min(times),
                "first_call_s": first,
                "peak_gib": peak(),
            }
        )
    started = time.perf_counter()
    generator.optimize(compile_mode)  # None: RANKLOOP_COMPILE_MODE
    setup = time.perf_counter() - started
    for m in ms:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        started = time.perf_counter()
        generator.render_float(latents[m], settings)  # compiles (or loads the inductor cache)
        sync()
        first = time.perf_counter() - started + setup
        setup = 0.0
        times, images = timed(m)
        seconds = statistics.median(times)
        rows.append(
            {
                "model": label,
                "path": "optimized",
                "m": m,
                "size": f"{size}x{size}",
                "steps": steps,
                "seconds": seconds,
                "min_s": min(times),
                "first_call_s": first,
                "max_abs_diff": float(np.nanmax(np.abs(images - eager[m][1]))),
                "nan_images": int(np.isnan(images).any(axis=(1, 2, 3)).sum()),
                "speedup": eager[m][0] / seconds,
                "peak_gib": peak(),
            }
        )
    return rows
