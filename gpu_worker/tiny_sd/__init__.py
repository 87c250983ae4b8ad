"""Small model configs and an offline CLIP tokenizer, shipped as data files.

``tiny-sd`` builds a real ``StableDiffusionPipeline`` from ``unet.json``, ``vae.json``,
``text_encoder.json``, ``scheduler.json`` and the tokenizer files here, with random weights drawn
from a fixed seed: the CPU stand-in for a checkpoint that runs the same code path. Nothing is
downloaded. ``sd15/``, ``sdxl/`` and ``sd_turbo/`` (SD 2.1-base, the SD-Turbo architecture) hold the
full-size architectures for the GPU benchmark, built the same way.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).parent
