"""Perturbations sized for people: the visible floor follows how consistently the crowd ranks.

The visibility band (options ``min_visible`` and ``max_visible``, an RMS pixel change over the
full range, applied once the generator's pixel effect is known: :meth:`OptimizerState.radius`)
keeps candidates between "a change nobody sees" and "a new picture". Where in that band people
actually tell candidates apart depends on the images and on the screen (a phone tile shows less
than a desktop one), which the optimizer cannot see. What it can see is the crowd: annotators
who cannot tell the candidates apart rank them at random, and agree only by chance; annotators
who see the differences agree. So each round's agreement moves the band's floor, the smallest
pixel change a perturbation or a step may make:

- the chance-corrected agreement :func:`chance_corrected` (the mean Spearman correlation
  between pairs of annotators, from Kendall's W and their number: ``(R W - 1) / (R - 1)``,
  Kendall & Babington Smith 1939; 0 for rankings at random, 1 for identical ones) below
  :data:`INDISTINCT_BELOW`: people could not tell the candidates apart, the floor widens by
  :data:`WIDEN`;
- above :data:`DISTINCT_ABOVE`: they agree easily, the floor narrows by :data:`NARROW` (smaller
  perturbations give a sharper estimate of the gradient);
- in between, or with fewer than two rankings (nothing to compare), it stays.

The floor never leaves ``[min_visible, max_visible]``. The thresholds come from the
perceptual crowd (:mod:`rankloop.simulation.perceptual_crowd`; ``rankloop bench consensus
--perceptual``, 6 seeds x 3 tastes): three people of one taste, ranking top-3 of 8 cppn
candidates, agree at about 0 (0.00 to 0.03) when the candidates lie below their threshold (RMS
pixel change 0.5-1 %) and at 0.3 to 0.6 when they see them (3-6 %); the pixel-exact crowd,
which sees every difference, agrees at about 0.5 whatever the size. A single round's agreement of three rankings is noisy
(a standard deviation of about 0.25), so the rule moves the floor by small factors, and a
campaign whose candidates people see keeps its floor near ``min_visible``.
"""

from __future__ import annotations

import math

#: Chance-corrected agreement below which the round's candidates count as not told apart.
INDISTINCT_BELOW = 0.1
#: Chance-corrected agreement above which people told the candidates apart easily.
DISTINCT_ABOVE = 0.4
#: Factor on the visible floor after a round people could not tell apart.
WIDEN = 1.25
#: Factor on the visible floor after a round people agreed on easily.
NARROW = 0.8


def chance_corrected(agreement: float | None, raters: int | None) -> float | None:
    """The mean pairwise Spearman correlation of ``raters`` rankings whose Kendall's W is
    ``agreement``: ``(R W - 1) / (R - 1)``; None when it is undefined (under two rankings)."""
    if agreement is None or raters is None or raters < 2 or not math.isfinite(agreement):
        return None
    return (raters * float(agreement) - 1.0) / (raters - 1.0)


def distinguishable(agreement: float | None, raters: int | None) -> bool | None:
    """Whether a round's annotators told its images apart (agreement above chance by at least
    :data:`INDISTINCT_BELOW`); None when there is nothing to compare."""
    rho = chance_corrected(agreement, raters)
    return None if rho is None else rho >= INDISTINCT_BELOW


def next_floor(floor: float, rho: float | None, low: float, high: float) -> float:
    """The visible floor after a round of chance-corrected agreement ``rho``, within
    ``[low, high]`` (the band's ``min_visible`` and ``max_visible``)."""
    if rho is not None:
        if rho < INDISTINCT_BELOW:
            floor *= WIDEN
        elif rho > DISTINCT_ABOVE:
            floor *= NARROW
    return min(max(floor, low), max(high, low))


__all__ = [
    "DISTINCT_ABOVE",
    "INDISTINCT_BELOW",
    "NARROW",
    "WIDEN",
    "chance_corrected",
    "distinguishable",
    "next_floor",
]
