"""Stable Diffusion generators through ``diffusers``: real checkpoints, and ``tiny-sd``.

The optimised variable is the initial noise latent; the sampler is deterministic (DDIM with
eta = 0, or the non-ancestral Euler sampler the turbo models use), so an image is a pure function
of (latent, prompt, model, steps, guidance, size). All candidates of a round go through the
pipeline as one batch (classifier-free guidance already batches the conditional and
unconditional halves into one UNet call); on CUDA out of memory the batch is split in halves and
retried.

On CUDA the generator runs the *optimised path* by default (``optimize=True``): fp16 weights,
SDPA attention, ``cudnn.benchmark``, and ``torch.compile`` of the UNet and the VAE decoder with a
persistent inductor cache, so the compile cost is paid once per worker start (and once per machine
for the kernels the cache keeps). ``rankloop bench render --device cuda`` measures exactly this
path against the eager pipeline in the same run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.generators import ResolvedSettings
from rankloop.core.contracts import generator_defaults, model_refusal
from rankloop.core.errors import InvalidInput, ModelUnavailable, OutOfResources
from rankloop.core.settings import load_settings

log = logging.getLogger(__name__)

TINY_SD_SEED = 1234  # the random weights of tiny-sd; fixed so every worker renders the same images
# "default": the checkpoint's own scheduler, replaced by Euler when it is stochastic.
SCHEDULERS = ("ddim", "euler", "default")

# Compile settings from the diffusers speed-up guide (conv 1x1 as matmul, no epilogue fusion;
# coordinate-descent tuning of Triton kernels with RANKLOOP_COMPILE_TUNING=1). The compile mode
# is RANKLOOP_COMPILE_MODE: autotuning modes ("max-autotune*") are accepted but belong in a
# warmed cache (RANKLOOP_INDUCTOR_CACHE), not a cold worker start: they can compile for many
# minutes.


def _torch():
    import torch

    return torch


def default_device() -> str:
    """``RANKLOOP_DEVICE`` if set, else CUDA when present. Call only after any fork."""
    device = load_settings().device
    if device:
        return device
    return "cuda" if _torch().cuda.is_available() else "cpu"


class DiffusionGenerator:
    """A loaded text-to-image pipeline plus the per-generator defaults.

    Parameters
    ----------
    pipe : diffusers.DiffusionPipeline
        A Stable Diffusion (1.x/2.x) or SDXL text-to-image pipeline.
    name : str
        ``"tiny-sd"`` or ``"diffusers"`` (what the settings call it).
    defaults : dict
        Settings filled in when the campaign leaves them out (width, height, steps, guidance,
        scheduler).
    device : str
        ``"cpu"`` or ``"cuda[:i]"``.
    optimize : bool or None
        Compile the UNet and VAE decoder; ``None`` means "on for CUDA, off for CPU".
    """

    shell = True  # diffusion noise latents live on the Gaussian shell: keep perturbations there

    def __init__(
        self,
        pipe: Any,
        *,
        name: str,
        defaults: dict[str, Any],
        device: str,
        optimize: bool | None = None,
        compile_mode: str | None = None,
    ):
        self.pipe = pipe
        self.name = name
        self.defaults = dict(defaults)
        self.device = device
        self.dtype = pipe.unet.dtype
        # The checkpoint's own scheduler; pipe.scheduler is swapped per render.
        self._base_scheduler_class = type(pipe.scheduler)
        self._base_scheduler_config = dict(pipe.scheduler.config)
        self._schedulers: dict[str, Any] = {}
        self._lock = threading.Lock()  # one pipeline call at a time (threads pool, tests)
        pipe.set_progress_bar_config(disable=True)
        self.optimized = False
        if optimize is None:
            optimize = device.startswith("cuda")
        if optimize:
            self.optimize(compile_mode)

    # -- optimised path ----------------------------------------------------------------------
    def optimize(self, compile_mode: str | None = None, cache_dir: str | None = None) -> None:
        """Switch this pipeline to the compiled path (idempotent). The first call at each batch
        size compiles (or loads compiled kernels from the persistent inductor cache).
        ``compile_mode`` and ``cache_dir`` default to the worker's settings."""
        if self.optimized:
            return
        torch = _torch()
        settings = load_settings()
        compile_mode = compile_mode or settings.compile_mode
        cache = Path(cache_dir or settings.inductor_cache).resolve()
        cache.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        inductor_config.conv_1x1_as_mm = True
        inductor_config.epilogue_fusion = False
        # Tuning: a slower first compile, faster kernels; worth it with a warm cache.
        if settings.compile_tuning:
            inductor_config.coordinate_descent_tuning = True
            inductor_config.coordinate_descent_check_all_directions = True
        # Batch sizes change with m, the attention check and OOM splits: allow a few graphs.
        # One static graph per batch size (m + 1, OOM halves) rather than one dynamic-shape
        # graph, whose kernels are slower.
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 32)
        torch._dynamo.config.automatic_dynamic_shapes = False
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        # SDPA is diffusers' default attention processor on torch 2; set it explicitly so a
        # checkpoint that ships another processor still takes the fast kernel.
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.pipe.unet.set_attn_processor(AttnProcessor2_0())
        self.pipe.vae.set_attn_processor(AttnProcessor2_0())
        self.pipe.unet = torch.compile(self.pipe.unet, mode=compile_mode)
        self.pipe.vae.decode = torch.compile(self.pipe.vae.decode, mode=compile_mode)
        self.optimized = True

    # -- settings ------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    def latent_shape(self, settings: ResolvedSettings) -> tuple[int, ...]:
        f = self.vae_scale_factor
        width, height = settings.width, settings.height
        if width % f or height % f:
            raise InvalidInput(
                f"width and height must be multiples of {f} for this model, got {width}x{height}"
            )
        channels = int(self.pipe.unet.config.in_channels)
        return (channels, height // f, width // f)

    def _scheduler(self, name: str | None) -> Any:
        if name not in SCHEDULERS:
            raise InvalidInput(f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)}")
        if name not in self._schedulers:
            from diffusers import DDIMScheduler, EulerDiscreteScheduler

            config = dict(self._base_scheduler_config)
            if name == "ddim":
                scheduler = DDIMScheduler.from_config(config)
            elif name == "euler":
                scheduler = EulerDiscreteScheduler.from_config(config)
            else:
                scheduler_class = self._base_scheduler_class
                if _is_stochastic(scheduler_class.__name__):
                    # e.g. SDXL-Turbo ships Euler *ancestral*, which draws fresh noise at every
                    # step: an image would no longer be a function of its latent.
                    log.info(
                        "checkpoint scheduler %s is stochastic; using Euler (non-ancestral)",
                        scheduler_class.__name__,
                    )
                    scheduler_class = EulerDiscreteScheduler
                scheduler = scheduler_class.from_config(config)
            self._schedulers[name] = scheduler
        return self._schedulers[name]

    # -- rendering -------------------------------------------------------------------------------
    def render(self, latents: np.ndarray, settings: ResolvedSettings) -> list[np.ndarray]:
        """Render a batch of initial noise latents ``(n, C, h, w)`` into ``n`` uint8 RGB arrays."""
        images = np.nan_to_num(self.render_float(latents, settings), nan=0.0)
        return list(np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8))

    def render_float(self, latents: np.ndarray, settings: ResolvedSettings) -> np.ndarray:
        """The pipeline's own output, ``(n, H, W, 3)`` float32 in [0, 1] (benchmarks compare
        the eager and the compiled path on it)."""
        latents = np.asarray(latents, dtype=np.float32)
        with self._lock:
            self.pipe.scheduler = self._scheduler(settings.scheduler)
            return np.stack(self._render_split(latents, settings))

    def _render_split(self, latents: np.ndarray, settings: ResolvedSettings) -> list[np.ndarray]:
        torch = _torch()
        try:
            return self._render_batch(latents, settings)
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            if len(latents) == 1:
                raise OutOfResources(
                    f"out of GPU memory rendering one {settings.width}x{settings.height} "
                    "image: lower width/height or use a GPU with more memory"
                ) from error
            half = len(latents) // 2
            log.warning(
                "CUDA out of memory at batch %d; retrying as %d + %d",
                len(latents),
                half,
                len(latents) - half,
            )
            return self._render_split(latents[:half], settings) + self._render_split(
                latents[half:], settings
            )

    def _render_batch(self, latents: np.ndarray, settings: ResolvedSettings) -> list[np.ndarray]:
        torch = _torch()
        if settings.steps is None or settings.guidance is None:  # a diffusion default fills them
            raise InvalidInput(f"{self.name} renders with steps and guidance: set both")
        kwargs: dict[str, Any] = dict(
            prompt=settings.prompt,
            num_images_per_prompt=len(latents),
            latents=torch.from_numpy(latents).to(self.device, self.dtype),
            height=settings.height,
            width=settings.width,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            output_type="np",
        )
        if settings.guidance > 1.0 and settings.negative_prompt:
            kwargs["negative_prompt"] = settings.negative_prompt
        if settings.scheduler == "ddim":
            kwargs["eta"] = 0.0
        with torch.inference_mode():
            images = self.pipe(**kwargs).images
        return list(np.asarray(images, dtype=np.float32))


def _is_stochastic(scheduler_name: str) -> bool:
    return any(word in scheduler_name for word in ("Ancestral", "SDE", "DDPM", "LCM"))


# -- builders ------------------------------------------------------------------------------------
def build_pipeline_from_configs(
    config_dir: str | Path, *, device: str = "cpu", dtype: Any = None, seed: int = TINY_SD_SEED
):
    """A ``StableDiffusionPipeline`` (or SDXL pipeline) with random weights from JSON configs.

    ``config_dir`` holds ``unet.json``, ``vae.json``, ``text_encoder.json`` (and for SDXL
    ``text_encoder_2.json``), ``scheduler.json``; the tokenizer is the offline one in
    ``gpu_worker/tiny_sd``. The weights are drawn from ``seed`` (speed does not depend on them;
    determinism does). Nothing is downloaded.
    """
    torch = _torch()
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from gpu_worker.tiny_sd import CONFIG_DIR as TOKENIZER_DIR

    config_dir = Path(config_dir)
    dtype = dtype or torch.float32

    def load(name: str) -> dict[str, Any]:
        return json.loads((config_dir / name).read_text())

    tokenizer = _offline_tokenizer(TOKENIZER_DIR)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Build on the target device: initialising billions of weights on the CPU is slow.
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(load("unet.json"))
            vae = AutoencoderKL.from_config(load("vae.json"))
            text_encoder = CLIPTextModel(CLIPTextConfig(**load("text_encoder.json")))
            text_encoder_2 = None
            if (config_dir / "text_encoder_2.json").exists():
                text_encoder_2 = CLIPTextModelWithProjection(
                    CLIPTextConfig(**load("text_encoder_2.json"))
                )
    scheduler_config = load("scheduler.json")
    scheduler_class = getattr(diffusers, scheduler_config.get("_class_name", "DDIMScheduler"))
    scheduler = scheduler_class.from_config(scheduler_config)
    modules = [unet, vae, text_encoder] + ([text_encoder_2] if text_encoder_2 else [])
    for module in modules:
        module.eval()
        if dtype != torch.float32:  # (a no-op cast would only log a diffusers warning)
            module.to(dtype=dtype)
    if text_encoder_2 is not None:
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
            add_watermarker=False,  # a watermark would change the pixels the bench compares
        )
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _offline_tokenizer(directory: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=str(directory / "vocab.json"),
        merges=str(directory / "merges.txt"),
        model_max_length=77,
    )


def load_tiny_sd(device: str = "cpu", optimize: bool | None = False) -> DiffusionGenerator:
    """The CPU stand-in: the real pipeline class with tiny random-weight models."""
    from gpu_worker.tiny_sd import CONFIG_DIR

    pipe = build_pipeline_from_configs(CONFIG_DIR, device=device)
    return DiffusionGenerator(
        pipe,
        name="tiny-sd",
        defaults=generator_defaults("tiny-sd"),
        device=device,
        optimize=optimize,
    )


def load_pretrained(
    model: str, device: str | None = None, optimize: bool | None = None
) -> DiffusionGenerator:
    """Load a checkpoint by hub id or local directory (SD 1.x/2.x, SDXL, SD-/SDXL-Turbo).

    Raises
    ------
    ModelUnavailable
        The model cannot be found or loaded (unknown id, no network, not a text-to-image
        pipeline).
    """
    if not model:
        raise InvalidInput("settings.model is required for generator 'diffusers'")
    # Only a model the operator listed: from_pretrained opens any path and fetches any hub id.
    refusal = model_refusal("diffusers", model, load_settings().models)
    if refusal is not None:
        raise ModelUnavailable(refusal)
    torch = _torch()
    device = device or default_device()
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        from diffusers import AutoPipelineForText2Image
        from diffusers.utils import deprecation_utils

        # Newer diffusers take `dtype` and deprecate `torch_dtype`; older ones know only the latter.
        dtype_kw = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
        pipe = AutoPipelineForText2Image.from_pretrained(model, **{dtype_kw: dtype})
    except Exception as error:  # diffusers raises OSError, ValueError, HF hub errors...
        # The why (a missing folder, a folder without model_index.json, no network) goes to the
        # worker's log only: the error reaches the owner, and must not tell paths apart.
        log.warning("cannot load model %r: %s: %s", model, type(error).__name__, error)
        raise ModelUnavailable(_unloadable(model)) from None
    if not hasattr(pipe, "unet") or not hasattr(pipe, "vae"):
        log.warning("model %r loads as %s, no UNet latent diffusion", model, type(pipe).__name__)
        raise ModelUnavailable(_unloadable(model))
    pipe.to(device)
    return DiffusionGenerator(
        pipe,
        name="diffusers",
        defaults=pretrained_defaults(model, pipe),
        device=device,
        optimize=optimize,
    )


def _unloadable(model: str) -> str:
    """The one text of a listed model that does not load, whatever the reason (the worker's
    log has it)."""
    return (
        f"cannot load model {model!r}: it is on the model list but does not load as a "
        "diffusers text-to-image pipeline (SD 1.x/2.x, SDXL or their turbo variants); the "
        "render worker's log says why"
    )


def pretrained_defaults(model: str, pipe: Any) -> dict[str, Any]:
    """The ``diffusers`` defaults for ``model`` (steps, guidance and sampler by family, from
    :func:`rankloop.core.contracts.generator_defaults`) at the checkpoint's native size."""
    size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    return {**generator_defaults("diffusers", model), "width": size, "height": size}
