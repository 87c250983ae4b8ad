"""Pixels both tiers make the same way, with Pillow (which the core does not import): the look
of the attention check, for every kind of campaign. The render worker degrades the current best
(:mod:`gpu_worker.render`), an image-set import one of the item's own images
(:mod:`service.image_sets`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def degrade(pixels: np.ndarray) -> np.ndarray:
    """The look of the attention check: a strong blur, nearly grey, washed out. An honest
    annotator ranks it last (and :mod:`rankloop.simulation.http_annotators` finds it by its
    colour alone)."""
    image = Image.fromarray(pixels)
    radius = max(2.0, max(image.size) / 24.0)
    image = image.filter(ImageFilter.GaussianBlur(radius))
    image = ImageEnhance.Color(image).enhance(0.15)
    image = ImageEnhance.Contrast(image).enhance(0.6)
    return np.asarray(image)
