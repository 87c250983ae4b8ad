"""How far apart two images look to a person at tile size, and how sure a choice between them is.

The perceptual side of :mod:`rankloop.simulation.perceptual_crowd`, pure numpy/scipy plus
scikit-image's colour science (imported on first use):

viewing
    A tile of ``tile_px`` CSS pixels. The CSS reference pixel is defined by its visual angle,
    about 0.0213 degrees (one pixel of a 96 dpi screen at arm's length, 28 in; W3C, *CSS Values
    and Units*, section "absolute lengths"), and phones and desktops size their CSS pixel to
    match it, so a tile's size in CSS pixels is its size on the retina. The task page
    (``annotator_ui/static/js/grid.js``, ``layoutGrid``) shows the m + 1 images in two columns
    on a screen narrower than 600 px: on a 360 px wide phone (the page's padding 2 x 0.6 rem,
    the gap 8 px) a tile is 167 px, about 3.6 degrees. On a 1440 x 900 desktop window the nine
    images fit in five columns of 270 px, about 5.8 degrees. :data:`PHONE` and :data:`DESKTOP`.
perceptual difference
    Each image is sampled at two CSS pixels per sample, converted to CIELAB (D65), and each
    channel blurred as the eye blurs it, then the difference is the mean over pixels of
    CIEDE2000 (CIE 142-2001, implemented by scikit-image after Sharma, Wu & Dalal 2005). The
    blur follows S-CIELAB (Zhang & Wandell 1997), which filters an opponent colour space
    before a CIELAB difference so that detail too fine for the eye does not count: the eye
    resolves lightness far more finely than colour. One Gaussian per channel stands in for
    S-CIELAB's sums of Gaussians: ``LIGHTNESS_BLUR_DEG`` = 0.02 degrees for L* (its luminance
    filter's narrow, dominant component) and ``CHROMA_BLUR_DEG`` = 0.2 degrees for a* and b*
    (its red-green and blue-yellow filters weigh a narrow component and one of spread 0.4 to
    0.5 degrees about equally). The blur is fixed on the retina, so a small tile puts more of
    the picture's detail under it: the same two images differ less on a phone than on a
    desktop.
psychometric function
    The probability of noticing a difference ``d`` is a Weibull function
    ``D(d) = 1 - 2 ** -((d / alpha) ** beta)``: 0 for identical images, 1/2 at the person's
    threshold ``alpha`` (the 75 %-correct point of a two-alternative choice, the usual
    definition of a just-noticeable difference), near 1 well above it. ``alpha`` centres on
    ``JND_DE00`` = 2.3, the just-noticeable colour difference of Mahy, Van Eycken &
    Oosterlinck (1994), measured in ΔE*ab and taken here on the CIEDE2000 scale (which gives
    smaller numbers than ΔE*ab for saturated colours: if anything a strict threshold); it
    varies between people (``THRESHOLD_SPREAD``, a log-normal spread of 25 %, a modelling
    choice). The slope ``beta`` = 3 is a value common for two-alternative detection (also a
    modelling choice, not a fit). A choice between ``a`` and ``b`` then is
    ``P(a) = lapse / 2 + (1 - lapse) * ((1 - D) / 2 + D * T(a, b))``: a coin flip for what is
    not noticed, the person's taste ``T`` for what is, and a lapse (a slip of attention or of
    the finger) that answers at random whatever the images. Lapse rates are drawn from
    ``[0, LAPSE_MAX]`` = ``[0, 0.06]``, the range Wichmann & Hill (2001) recommend allowing
    for trained observers, whose thresholds a stray lapse otherwise biases.

References
----------
Mahy, M., Van Eycken, L. & Oosterlinck, A. (1994). Evaluation of uniform color spaces developed
after the adoption of CIELAB and CIELUV. *Color Res. Appl.* 19(2), 105-121.
Sharma, G., Wu, W. & Dalal, E. N. (2005). The CIEDE2000 color-difference formula:
implementation notes, supplementary test data, and mathematical observations. *Color Res.
Appl.* 30(1), 21-30.
Wichmann, F. A. & Hill, N. J. (2001). The psychometric function: I. Fitting, sampling, and
goodness of fit. *Perception & Psychophysics* 63(8), 1293-1313.
Zhang, X. & Wandell, B. A. (1997). A spatial extension of CIELAB for digital color-image
reproduction. *J. Soc. Inf. Display* 5(1), 61-63.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rankloop.core.errors import InvalidInput

#: Visual angle of one CSS reference pixel, degrees.
CSS_PX_DEG = 0.0213
#: Standard deviation of the eye's blur of lightness and of colour (a*, b*), degrees.
LIGHTNESS_BLUR_DEG = 0.02
CHROMA_BLUR_DEG = 0.2
#: CSS pixels per sample of the perceived image.
CSS_PX_PER_SAMPLE = 2
#: The just-noticeable CIEDE2000 difference (the population's median threshold).
JND_DE00 = 2.3
#: Between-person spread of the threshold: the standard deviation of its logarithm.
THRESHOLD_SPREAD = 0.25
#: Slope of the Weibull psychometric function.
WEIBULL_SLOPE = 3.0
#: Largest lapse rate drawn for a person.
LAPSE_MAX = 0.06


@dataclass(frozen=True)
class Viewing:
    """How big the task page shows each image: a tile of ``tile_px`` CSS pixels."""

    name: str
    tile_px: int

    @property
    def degrees(self) -> float:
        """The tile's side as a visual angle."""
        return self.tile_px * CSS_PX_DEG

    @property
    def samples(self) -> int:
        """Side of the perceived image in samples: what a renderer should draw."""
        return max(8, round(self.tile_px / CSS_PX_PER_SAMPLE))

    def blur_samples(self, degrees: float) -> float:
        """A blur of ``degrees`` in samples of :attr:`samples`."""
        return degrees / (CSS_PX_DEG * CSS_PX_PER_SAMPLE)


PHONE = Viewing("phone", 167)
DESKTOP = Viewing("desktop", 270)
VIEWINGS = {v.name: v for v in (PHONE, DESKTOP)}


def perceived(image: np.ndarray, viewing: Viewing) -> np.ndarray:
    """An RGB image (uint8, or floats in 0..1) as seen at ``viewing``: CIELAB, blurred.

    The image is resampled to :attr:`Viewing.samples` on a side when it is not that size
    already (a renderer that draws at that size saves the resampling).
    """
    from scipy.ndimage import gaussian_filter
    from skimage.color import rgb2lab

    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise InvalidInput(f"an RGB image of shape (h, w, 3) is needed, got {array.shape}")
    rgb = array / 255.0 if array.dtype == np.uint8 else np.asarray(array, dtype=float)
    side = viewing.samples
    if rgb.shape[:2] != (side, side):
        from skimage.transform import resize

        rgb = resize(rgb, (side, side, 3), anti_aliasing=True)
    lab = rgb2lab(np.clip(rgb, 0.0, 1.0))
    sigmas = [
        viewing.blur_samples(d) for d in (LIGHTNESS_BLUR_DEG, CHROMA_BLUR_DEG, CHROMA_BLUR_DEG)
    ]
    return np.stack(
        [gaussian_filter(lab[..., c], sigma, mode="nearest") for c, sigma in enumerate(sigmas)],
        axis=-1,
    )


def differences(images: Sequence[np.ndarray], viewing: Viewing) -> np.ndarray:
    """The ``(n, n)`` symmetric matrix of mean CIEDE2000 differences between ``images`` as
    seen at ``viewing`` (0 on the diagonal)."""
    from skimage.color import deltaE_ciede2000

    seen = [perceived(image, viewing) for image in images]
    n = len(seen)
    matrix = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            matrix[a, b] = matrix[b, a] = float(np.mean(deltaE_ciede2000(seen[a], seen[b])))
    return matrix


def detection(difference: np.ndarray | float, threshold: float = JND_DE00) -> np.ndarray:
    """Probability of noticing a difference: ``1 - 2 ** -((d / threshold) ** beta)``."""
    d = np.maximum(np.asarray(difference, dtype=float), 0.0)
    return 1.0 - np.exp2(-((d / threshold) ** WEIBULL_SLOPE))


def choice_probability(
    difference: np.ndarray | float,
    taste: np.ndarray | float,
    threshold: float = JND_DE00,
    lapse: float = 0.0,
) -> np.ndarray:
    """Probability of choosing ``a`` over ``b``, their difference ``d`` and the person's taste
    ``T = P(a over b | the difference is seen)``: ``lapse / 2 + (1 - lapse) * ((1 - D) / 2 +
    D * T)``. Identical images give 1/2; very different ones ``lapse / 2 + (1 - lapse) * T``."""
    seen = detection(difference, threshold)
    return lapse / 2.0 + (1.0 - lapse) * ((1.0 - seen) / 2.0 + seen * np.asarray(taste))


def share_above(matrix: np.ndarray, items: Sequence[int] | None = None) -> float:
    """Share of the pairs of ``items`` (default: all) whose difference is at least the JND."""
    items = list(range(len(matrix))) if items is None else list(items)
    if len(items) < 2:
        return 0.0
    sub = np.asarray(matrix)[np.ix_(items, items)]
    upper = sub[np.triu_indices(len(items), 1)]
    return float(np.mean(upper >= JND_DE00))


__all__ = [
    "CHROMA_BLUR_DEG",
    "CSS_PX_DEG",
    "DESKTOP",
    "JND_DE00",
    "LAPSE_MAX",
    "LIGHTNESS_BLUR_DEG",
    "PHONE",
    "THRESHOLD_SPREAD",
    "VIEWINGS",
    "WEIBULL_SLOPE",
    "Viewing",
    "choice_probability",
    "detection",
    "differences",
    "perceived",
    "share_above",
]
