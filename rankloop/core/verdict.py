"""The crowd's verdict: does the crowd prefer what a campaign delivered to where it started?

A verdict round shows two images side by side, in each annotator's own random order: the
campaign's starting image (round 0's current best) and the delivered one (the latest current
best). An answer is a ranking of those two, stored like any other; here it is read back as a
preference, and the share of answers preferring the delivered image gets a 95 % Wilson score
interval.

Reference: E. B. Wilson, "Probable inference, the law of succession, and statistical
inference", JASA 22 (1927) 209-212; recommended over the Wald interval by L. D. Brown,
T. T. Cai and A. DasGupta, "Interval estimation for a binomial proportion", Statistical
Science 16 (2001) 101-133 (it keeps near its nominal coverage for small n and shares near 0 or 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rankloop.core.contracts import ImageRole
from rankloop.core.errors import InvalidInput

# Campaigns of at least this many rounds end with a verdict round unless their owner says
# otherwise (campaign setting ``verdict``): a shorter one has barely moved.
VERDICT_MIN_ROUNDS: Final = 5
Z_95: Final = 1.959963984540054  # the standard normal's 97.5 % quantile
TIE: Final = "tie"  # an answer that ties the two images


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial share ``successes / n`` (95 % by default).

    Raises :class:`InvalidInput` when ``n`` is negative or ``successes`` is outside ``0..n``;
    ``n == 0`` gives the uninformative ``(0, 1)``.
    """
    if n < 0 or not 0 <= successes <= n:
        raise InvalidInput(f"a share needs 0 <= successes <= n (got {successes} of {n})")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def preference(positions: Sequence[Any], start: int, delivered: int) -> str | None:
    """What one stored answer (image positions, best first; a list is a tie) says: the role
    (:class:`~rankloop.core.contracts.ImageRole`) of the image placed higher (an unranked image
    is below every ranked one), :data:`TIE`, or None when it places neither image."""

    def place(position: int) -> float:
        for rank, group in enumerate(positions):
            members = group if isinstance(group, list) else [group]
            if position in members:
                return rank
        return math.inf

    a, b = place(delivered), place(start)
    if a == b:
        return None if math.isinf(a) else TIE
    return ImageRole.DELIVERED if a < b else ImageRole.START


@dataclass(frozen=True)
class Verdict:
    """The answers of a campaign's verdict rounds, counted: ``share`` of the decisive answers
    (ties aside) preferring the delivered image, with its 95 % Wilson interval."""

    delivered: int = 0
    start: int = 0
    ties: int = 0
    fresh: int = 0  # answers from annotators who did not steer the campaign

    @property
    def n(self) -> int:
        """Decisive answers (a tie says neither)."""
        return self.delivered + self.start

    @property
    def share(self) -> float | None:
        return None if self.n == 0 else self.delivered / self.n

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.n == 0 else wilson_interval(self.delivered, self.n)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval or (None, None)
        return {
            "share": self.share,
            "low": low,
            "high": high,
            "n": self.n,
            "prefer_delivered": self.delivered,
            "prefer_start": self.start,
            "ties": self.ties,
            "from_non_steering": self.fresh,
        }

    def sentence(self) -> str:
        """The verdict in words, as the console and the report lead with it."""
        if self.share is None:
            return "no verdict yet: nobody has compared the delivered image with the start"
        low, high = self.interval or (0.0, 1.0)
        answers = "1 answer prefers" if self.n == 1 else f"{self.n} answers prefer"
        return (
            f"{self.share:.0%} of {answers} the delivered image to the start "
            f"(95 % CI {low:.0%}–{high:.0%})"
        )


def count_answers(answers: Iterable[tuple[Sequence[Any], int, int, bool]]) -> Verdict:
    """The verdict of answers ``(positions, start position, delivered position, steered)``."""
    delivered = start = ties = fresh = 0
    for positions, start_at, delivered_at, steered in answers:
        said = preference(positions, start_at, delivered_at)
        if said is None:
            continue
        delivered += said == ImageRole.DELIVERED
        start += said == ImageRole.START
        ties += said == TIE
        fresh += not steered
    return Verdict(delivered=delivered, start=start, ties=ties, fresh=fresh)


def pool(verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict of many campaigns' answers (a study's): every answer counts once, so the
    pooled share weighs each campaign by its answers; its interval treats the answers as
    independent (it is narrower than one that allowed for campaigns differing)."""
    total = Verdict()
    for v in verdicts:
        total = Verdict(
            delivered=total.delivered + v.delivered,
            start=total.start + v.start,
            ties=total.ties + v.ties,
            fresh=total.fresh + v.fresh,
        )
    return total


@dataclass(frozen=True)
class Spread:
    """How many campaigns' own 95 % intervals lie wholly above one half (the crowd prefers the
    delivered image), wholly below it (the start), or straddle it, and how many have no answer."""

    above: int = 0
    below: int = 0
    undecided: int = 0
    unanswered: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "campaigns_above": self.above,
            "campaigns_below": self.below,
            "campaigns_undecided": self.undecided,
            "campaigns_unanswered": self.unanswered,
        }


def spread(verdicts: Iterable[Verdict]) -> Spread:
    """The per-campaign spread of ``verdicts`` (see :class:`Spread`)."""
    above = below = undecided = unanswered = 0
    for v in verdicts:
        if v.interval is None:
            unanswered += 1
        elif v.interval[0] > 0.5:
            above += 1
        elif v.interval[1] < 0.5:
            below += 1
        else:
            undecided += 1
    return Spread(above, below, undecided, unanswered)


__all__ = [
    "TIE",
    "VERDICT_MIN_ROUNDS",
    "Z_95",
    "Spread",
    "Verdict",
    "count_answers",
    "pool",
    "preference",
    "spread",
    "wilson_interval",
]
