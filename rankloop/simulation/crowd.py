"""Simulated annotators: a crowd that ranks points it can judge only noisily.

Pure numpy. Each simulated annotator answers one round's set of items, given their hidden
objective values (lower = better), with a best-first (possibly top-k) ranking:

honest
    Plackett–Luce noise at the annotator's temperature ``T``: the answer is the order of
    ``u_i / T + G_i`` with ``G_i`` standard Gumbel draws (the Gumbel-max view of PL sampling).
spammer
    A uniformly random ranking.
adversary
    An honest-looking noisy ranking, reversed (worst first).
careless
    Honest in a round with probability ``1 - carelessness``, else a uniformly random ranking
    (someone who clicks through half the time).

Every annotator may drop out (no answer) with probability ``dropout`` and may declare ties:
each adjacent pair of its answer is merged into one tie group with probability ``tie_rate``.

Utilities are ``u = -f`` rescaled so that the real items of a round have unit standard
deviation (``scale="relative"``, the default): the temperature then means "noise as a fraction
of how different this round's items are", the same in the first round as in the fiftieth, like
a person comparing images side by side. ``scale="absolute"`` uses ``-f`` as it is, so noise
swamps the differences as the optimizer closes in. Attention items (a degraded copy of the best)
get a utility well below every real item.

Answers are reproducible: annotator ``j`` in round ``t`` draws from
``numpy.random.default_rng([seed, t, j, attempt])``, whatever else was asked before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from rankloop.core.errors import InvalidInput

__all__ = ["KINDS", "Crowd", "SimulatedAnnotator", "make_crowd"]

KINDS = ("honest", "spammer", "adversary", "careless")
ATTENTION_GAP = 3.0
"""How far (in within-round standard deviations) an attention item sits below the worst real item."""


@dataclass(frozen=True)
class SimulatedAnnotator:
    """One simulated annotator.

    Parameters
    ----------
    id : str
        Annotator id used in the answers.
    kind : {"honest", "spammer", "adversary"}
    temperature : float
        Plackett–Luce temperature (> 0); higher = noisier. Unused by spammers.
    k : int or None
        Answer with the top ``k`` only (None: a full ranking).
    dropout : float
        Probability of giving no answer in a round.
    tie_rate : float
        Probability that two adjacent items of the answer are declared tied.
    carelessness : float
        For ``kind="careless"``: probability of answering at random in a round.
    """

    id: str
    kind: str = "honest"
    temperature: float = 0.5
    k: int | None = None
    dropout: float = 0.0
    tie_rate: float = 0.0
    carelessness: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown annotator kind {self.kind!r}; use one of {KINDS}")
        if not self.temperature > 0:
            raise InvalidInput(f"temperature must be > 0, got {self.temperature}")
        if self.k is not None and self.k < 1:
            raise InvalidInput(f"k must be None or >= 1, got {self.k}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.tie_rate <= 1.0:
            raise InvalidInput("dropout must be in [0, 1) and tie_rate in [0, 1]")
        if not 0.0 <= self.carelessness <= 1.0:
            raise InvalidInput(f"carelessness must be in [0, 1], got {self.carelessness}")

    def answer(self, utilities: np.ndarray, rng: np.random.Generator) -> list | None:
        """A best-first answer (ties as lists) for items of the given utilities, or None."""
        if rng.random() < self.dropout:
            return None
        n = len(utilities)
        gumbel = rng.gumbel(size=n)
        # Drawn only for the careless kind: the other kinds' answers stay as they were.
        careless = self.kind == "careless" and rng.random() < self.carelessness
        if self.kind == "spammer" or careless:
            permutation = rng.permutation(n)
        else:
            permutation = np.argsort(-(utilities / self.temperature + gumbel), kind="stable")
            if self.kind == "adversary":
                permutation = permutation[::-1]
        order = [int(i) for i in permutation[: self.k or n]]
        if self.tie_rate <= 0 or len(order) < 2:
            return order
        merge = rng.random(len(order) - 1) < self.tie_rate
        answer: list = [[order[0]]]
        for item, tied in zip(order[1:], merge, strict=True):
            if tied:
                answer[-1].append(item)
            else:
                answer.append([item])
        return [group[0] if len(group) == 1 else group for group in answer]


@dataclass(frozen=True)
class Crowd:
    """A fixed set of simulated annotators with one seed.

    Parameters
    ----------
    annotators : sequence of SimulatedAnnotator
    seed : int
    scale : {"relative", "absolute"}
        How objective values become utilities (see the module docstring).
    """

    annotators: tuple[SimulatedAnnotator, ...]
    seed: int = 0
    scale: str = "relative"
    _ids: frozenset[str] = field(init=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotators", tuple(self.annotators))
        ids = [a.id for a in self.annotators]
        if not ids:
            raise InvalidInput("a crowd needs at least one annotator")
        if len(set(ids)) != len(ids):
            raise InvalidInput(f"annotator ids must be unique, got {ids}")
        if self.scale not in ("relative", "absolute"):
            raise InvalidInput(f"scale must be 'relative' or 'absolute', got {self.scale!r}")
        object.__setattr__(self, "_ids", frozenset(ids))

    def utilities(self, values: ArrayLike, attention: Iterable[int] = ()) -> np.ndarray:
        """Utilities (higher = better) of items with objective ``values`` (lower = better)."""
        array = np.asarray(values, dtype=float)
        if array.ndim != 1 or len(array) == 0 or not np.all(np.isfinite(array)):
            raise InvalidInput("values must be a non-empty 1-d array of finite numbers")
        attention = sorted(set(int(i) for i in attention))
        real = np.ones(len(array), dtype=bool)
        real[attention] = False
        if not real.any():
            raise InvalidInput("at least one item must not be an attention item")
        utilities = -array
        if self.scale == "relative":
            spread = float(utilities[real].std())
            utilities = (utilities - utilities[real].mean()) / (spread if spread > 0 else 1.0)
            gap = ATTENTION_GAP
        else:
            gap = ATTENTION_GAP * max(float(utilities[real].std()), 1e-12)
        if attention:
            utilities[attention] = utilities[real].min() - gap
        return utilities

    def rank(
        self,
        values: ArrayLike,
        round_number: int = 0,
        attention: Iterable[int] = (),
        attempt: int = 0,
    ) -> list[tuple[str, list]]:
        """Every annotator's answer to one round: ``[(annotator_id, best-first order), ...]``.

        Parameters
        ----------
        values : sequence of float
            Hidden objective values of the round's items (lower = better).
        round_number : int
            Selects the random draws, with the crowd's seed and the annotator's position.
        attention : iterable of int
            Attention items: honest annotators put them at the bottom.
        attempt : int
            Asks the same round again with fresh draws (when everybody dropped out, say).

        Returns
        -------
        list of (str, list)
            Annotators who dropped out are left out.
        """
        utilities = self.utilities(values, attention)
        answers = []
        for position, annotator in enumerate(self.annotators):
            rng = np.random.default_rng([self.seed, int(round_number), position, int(attempt)])
            answer = annotator.answer(utilities, rng)
            if answer is not None:
                answers.append((annotator.id, answer))
        return answers

    def kinds(self) -> dict[str, str]:
        """annotator id -> kind."""
        return {a.id: a.kind for a in self.annotators}


def make_crowd(
    annotators: int = 5,
    spammers: int = 1,
    adversaries: int = 1,
    temperature: float = 0.5,
    k: int | None = None,
    dropout: float = 0.0,
    tie_rate: float = 0.0,
    seed: int = 0,
    scale: str = "relative",
    sharp_adversaries: bool = False,
) -> Crowd:
    """A crowd of ``annotators``: honest ones first, then ``spammers``, then ``adversaries``.

    Honest annotators' temperatures spread log-uniformly over ``[temperature / 2,
    temperature * 2]`` (drawn from ``seed``): some are more careful than others. Adversaries
    reverse a ranking made at ``temperature``, or with ``sharp_adversaries`` at the most careful
    honest annotator's temperature (as sure of their reversed answers as the best honest one
    is of theirs). Ids are ``"h0", "h1", ...`` (honest), ``"s0",
    ...`` (spammers) and ``"a0", ...`` (adversaries).
    """
    honest = annotators - spammers - adversaries
    if spammers < 0 or adversaries < 0 or honest < 0:
        raise InvalidInput(
            f"{annotators} annotators cannot hold {spammers} spammers and {adversaries} adversaries"
        )
    rng = np.random.default_rng([seed, 999])
    temperatures = temperature * np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=honest))
    common: dict[str, Any] = {"k": k, "dropout": dropout, "tie_rate": tie_rate}
    members = [
        SimulatedAnnotator(f"h{i}", "honest", float(t), **common)
        for i, t in enumerate(temperatures)
    ]
    members += [
        SimulatedAnnotator(f"s{i}", "spammer", temperature, **common) for i in range(spammers)
    ]
    sharpest = float(temperatures.min()) if sharp_adversaries and honest else temperature
    members += [
        SimulatedAnnotator(f"a{i}", "adversary", sharpest, **common) for i in range(adversaries)
    ]
    return Crowd(tuple(members), seed=seed, scale=scale)
