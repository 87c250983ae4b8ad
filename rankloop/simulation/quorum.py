"""A round's quorum in simulation: which of the crowd's answers a round waits for.

The crowd answers every round (:meth:`rankloop.simulation.crowd.Crowd.rank`); the answers arrive
in an order drawn per round. A fixed quorum of ``q`` takes the first ``q`` to arrive; an
adaptive one (``adaptive:lo-hi``) takes the first ``lo`` and then one more at a time while the
round's decision is not settled (:func:`rankloop.core.settle.settle_round`, as the coordinator
does: :mod:`service.quorum`), up to ``hi``. Rounds are timed by :func:`round_wall_time` under
a log-normal crowd.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.campaign_settings import CampaignFields
from rankloop.core.errors import InvalidInput
from rankloop.core.settle import CAMPAIGN_PRIOR, MOVE_COST, PRIOR_ANNOTATORS

DEFAULT_CONFIDENCE: float = CampaignFields.model_fields["settle_confidence"].get_default()

__all__ = ["QuorumRule", "attention_failed", "parse_quorums", "round_wall_time"]


@dataclass(frozen=True)
class QuorumRule:
    """``fixed`` (``low == high``) or ``adaptive`` from ``low`` to ``high`` answers."""

    kind: str
    low: int
    high: int
    confidence: float = DEFAULT_CONFIDENCE  # an adaptive quorum's settle_confidence
    prior: float | str = PRIOR_ANNOTATORS  # the settle rule's prior (rankloop.core.settle)
    move_cost: float = MOVE_COST  # a wrong move's cost in wrong stays (rankloop.core.settle)

    @property
    def label(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.high}"
        suffix = "" if self.confidence == DEFAULT_CONFIDENCE else f"@{self.confidence:g}"
        if self.prior == CAMPAIGN_PRIOR:
            suffix += "+eb"
        elif self.prior != PRIOR_ANNOTATORS:
            suffix += f"+{self.prior:g}"
        if self.move_cost != MOVE_COST:
            suffix += f"*{self.move_cost:g}"
        return f"adaptive:{self.low}-{self.high}{suffix}"

    @classmethod
    def parse(cls, text: str) -> QuorumRule:
        """``fixed:3``, ``adaptive:2-5``, ``adaptive:2-5@0.97`` (a settle confidence),
        ``adaptive:2-5@0.6+1`` (and the settle rule's prior, in annotators; ``+eb``: learnt
        from the campaign's disagreement) or ``adaptive:2-5*3`` (a wrong move costs three
        wrong stays)."""
        kind, _, size = text.strip().partition(":")
        size, _, cost_text = size.partition("*")
        size, _, prior_text = size.partition("+")
        size, _, confidence_text = size.partition("@")
        try:
            confidence = float(confidence_text) if confidence_text else DEFAULT_CONFIDENCE
            prior: float | str = PRIOR_ANNOTATORS
            if prior_text == "eb":
                prior = CAMPAIGN_PRIOR
            elif prior_text:
                prior = float(prior_text)
            move_cost = float(cost_text) if cost_text else MOVE_COST
            extras = confidence_text or prior_text or cost_text
            if kind == "fixed" and not extras:
                low = high = int(size)
            elif kind == "adaptive":
                low_text, _, high_text = size.partition("-")
                low, high = int(low_text), int(high_text)
            else:
                raise ValueError(kind)
        except ValueError:
            raise InvalidInput(
                f"bad quorum {text!r}: use fixed:N or "
                "adaptive:LOW-HIGH[@CONFIDENCE][+PRIOR|+eb][*MOVE_COST] (e.g. adaptive:2-5)"
            ) from None
        numeric = 0.0 if isinstance(prior, str) else prior
        if (
            not 1 <= low <= high
            or not 0.5 <= confidence < 1.0
            or not 0.0 <= numeric <= 100.0
            or not 1.0 <= move_cost <= 100.0
        ):
            raise InvalidInput(
                f"bad quorum {text!r}: need 1 <= LOW <= HIGH, 0.5 <= CONFIDENCE < 1, "
                "0 <= PRIOR <= 100, 1 <= MOVE_COST <= 100"
            )
        return cls(kind, low, high, confidence, prior, move_cost)

    def take(
        self,
        answers: Sequence[Any],
        rng: np.random.Generator,
        settled: Callable[[list[Any]], bool],
    ) -> list[Any]:
        """The answers the round closes on, in arrival order (drawn with ``rng``)."""
        if len(answers) < self.high:
            raise InvalidInput(
                f"quorum {self.label} needs a crowd of {self.high}; it has {len(answers)}"
            )
        arrived = [answers[i] for i in rng.permutation(len(answers))]
        n = self.low
        if self.kind == "adaptive":
            while n < self.high and not settled(arrived[:n]):
                n += 1
        return arrived[:n]


def parse_quorums(text: str) -> list[QuorumRule]:
    """``fixed:3,fixed:5,adaptive:2-5`` as rules."""
    return [QuorumRule.parse(part) for part in text.split(",") if part.strip()]


def attention_failed(order: Sequence[Any], attention: Sequence[int], n_items: int) -> bool:
    """The coordinator's attention rule on a best-first answer: failed when the attention item
    is placed above, or tied with, a candidate (ranked or not)."""
    flat = [[g] if not isinstance(g, list | tuple) else list(g) for g in order]
    seen = {i for group in flat for i in group}
    marks = set(attention)
    for rank, group in enumerate(flat):
        if marks & set(group):
            below = {i for g in flat[rank + 1 :] for i in g}
            return bool(set(group) - marks or below - marks or len(seen | marks) < n_items)
    return False


def round_wall_time(
    needed: int,
    low: int,
    rng: np.random.Generator,
    median_s: float = 20.0,
    sigma: float = 0.6,
    straggler_after: float | None = None,
    sweep_s: float = 10.0,
) -> float:
    """Seconds from a round's opening to its last counted ranking, in simulated time.

    ``low`` annotators start at once (the quorum's first leases), then one more at a time
    until ``needed`` rankings are in (an adaptive quorum's raises); each takes a log-normal time
    (median ``median_s``, log-sd ``sigma``). With ``straggler_after``, the sweep (every
    ``sweep_s``) offers the last slot, once, to one more annotator once it has run that many
    medians, and the first of the two to answer fills it. ``straggler_after=0, sweep_s=0``
    offers it the instant all but the last are in: the most one offer can save.
    """

    # Every slot's own time first, the offered annotators' from a stream of their own: the
    # same crowd with and without offers.
    base = median_s * np.exp(sigma * rng.standard_normal(max(needed, low)))
    offers = np.random.default_rng(rng.integers(2**63))

    def last_slot(start: float, slowest: float, ready: float) -> float:
        """When the last slot (leased at ``start``, answered at ``slowest``) is filled, with
        the others in at ``ready``."""
        if straggler_after is None:
            return slowest
        due = max(ready, start + straggler_after * median_s)
        # The sweep sees it at its next run (``sweep_s = 0``: at once).
        offered = math.ceil(due / sweep_s) * sweep_s if sweep_s > 0 else due
        if offered >= slowest:
            return slowest
        return min(slowest, offered + median_s * math.exp(sigma * offers.standard_normal()))

    times = np.sort(base[:low])
    ready = float(times[-2]) if low > 1 else 0.0
    clock = last_slot(0.0, float(times[-1]), ready)
    for extra in base[low:needed]:
        start = clock
        clock = last_slot(start, start + float(extra), start)
    return clock
