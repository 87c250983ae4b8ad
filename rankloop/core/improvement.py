"""Did the delivered image improve round by round? An estimate from the rankings already given.

Every round shows the current best (the optimizer's centre) among its candidates, and the point
the next round starts from is either that centre again or the candidate the crowd ranked above
it. Each round's scaled Plackett–Luce utilities (:func:`rankloop.core.consensus.scaled_pl.
fit_round`, every annotator's scale learnt with them) put both on that round's scale, so the
step from one round's best to the next is ``u[next] - u[centre]``; chained from round 0's best
(strength 0), the steps give every round's best one strength on one scale, the scale on which
an honest annotator's noise is 1. No extra ranking is asked for.

The interval is a bootstrap over each round's annotators (their answers resampled with
replacement, the utilities refitted with the scales of the full fit), the rounds drawn
independently and the steps summed per draw: the 2.5th and 97.5th percentiles.

Reference: B. Efron and R. Tibshirani, *An Introduction to the Bootstrap* (1993), ch. 13
(percentile intervals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from rankloop.core.consensus.evidence import parse_rankings
from rankloop.core.consensus.scaled_pl import PRIOR_PRECISION, PRIOR_SCALE, RoundFit, fit_round

BOOTSTRAP: Final = 200  # draws of the interval
LEVEL: Final = 0.95


@dataclass(frozen=True)
class RoundSteps:
    """One round's evidence about the step of the delivered point.

    ``rankings``: ``(annotator id, positions best first)``; ``centre``: the position of the
    round's current best among its images; ``next_centre``: the position of the point the next
    round starts from (the centre again when the point did not move)."""

    number: int
    rankings: Sequence[tuple[Any, Any]]
    n_items: int
    known_worst: frozenset[int]
    centre: int
    next_centre: int


@dataclass(frozen=True)
class Strength:
    """The strength of round ``round``'s best image relative to round 0's, with its interval."""

    round: int
    strength: float
    low: float
    high: float


def _fit(answers: Sequence[Any], steps: RoundSteps, scales: np.ndarray | None = None) -> RoundFit:
    return fit_round(
        answers,
        steps.n_items,
        np.full(len(answers), PRIOR_SCALE),
        np.full(len(answers), PRIOR_PRECISION),
        known_worst=steps.known_worst,
        fixed_scales=scales,
    )


def _step(fit: RoundFit, steps: RoundSteps) -> float:
    """The round's step: its next centre's utility over its centre's."""
    return float(fit.utilities[steps.next_centre] - fit.utilities[steps.centre])


def step_samples(
    steps: RoundSteps, rng: np.random.Generator, draws: int = BOOTSTRAP
) -> tuple[float, np.ndarray]:
    """The round's step (the full fit) and ``draws`` bootstrap samples of it."""
    if steps.centre == steps.next_centre or not steps.rankings:
        return 0.0, np.zeros(draws)
    answers = parse_rankings(list(steps.rankings), steps.n_items)
    full = _fit(answers, steps)
    samples = np.empty(draws)
    for i in range(draws):
        pick = rng.integers(0, len(answers), len(answers))
        samples[i] = _step(_fit([answers[j] for j in pick], steps, full.scale_mean[pick]), steps)
    return _step(full, steps), samples


def improvement_curve(
    rounds: Sequence[RoundSteps], draws: int = BOOTSTRAP, seed: int = 0
) -> list[Strength]:
    """Every round's best image's strength (round 0's: 0) from the rounds' steps, in order;
    the strength of round ``t + 1``'s best is that of round ``t``'s plus round ``t``'s step."""
    rng = np.random.default_rng(seed)
    total, samples = 0.0, np.zeros(draws)
    tail = (1.0 - LEVEL) / 2.0
    curve = [Strength(rounds[0].number, 0.0, 0.0, 0.0)] if rounds else []
    for steps in rounds:
        step, drawn = step_samples(steps, rng, draws)
        total, samples = total + step, samples + drawn
        low, high = np.quantile(samples, [tail, 1.0 - tail])
        curve.append(Strength(steps.number + 1, total, float(low), float(high)))
    return curve


__all__ = ["BOOTSTRAP", "LEVEL", "RoundSteps", "Strength", "improvement_curve", "step_samples"]
