"""A simulated crowd that sees like people: it ranks what it can tell apart at tile size.

The crowd of :mod:`rankloop.simulation.crowd` reads its taste off the objective exactly: two
candidates one grey level apart are as plain to it as two different pictures. A person on the
task page sees the candidates as tiles, a few degrees of visual angle each, and tells two of
them apart only when they differ by more than a just-noticeable difference
(:mod:`rankloop.simulation.perception` gives the viewing model, the perceptual difference and
the psychometric function, with where their parameters come from).

Each :class:`PerceptualAnnotator` has a threshold (around the JND, ΔE00 2.3), a lapse rate
(0 to 6 %) and a taste temperature (the Plackett–Luce temperature of the pixel-exact crowd:
given a difference they see, they prefer ``a`` over ``b`` with probability
``sigmoid((u_a - u_b) / T)`` on the same within-round utilities). A person answers top-k as the
task page asks: they pick the best of the tiles left by going through them in a random order,
keeping the better of the one held and the next (a knockout of pairwise choices, each drawn
from :func:`~rankloop.simulation.perception.choice_probability`), then the best of the rest,
``k`` times. Candidates they cannot tell apart come out in a random order, so a crowd that
sees no difference agrees only by chance; a ``careless`` person answers at random in a round
with probability ``carelessness``, as in the pixel-exact crowd.

Reproducible: annotator ``j`` in round ``t`` draws from ``default_rng([seed, t, j, attempt])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from rankloop.core.errors import InvalidInput
from rankloop.simulation.crowd import Crowd, SimulatedAnnotator
from rankloop.simulation.perception import (
    JND_DE00,
    LAPSE_MAX,
    PHONE,
    THRESHOLD_SPREAD,
    Viewing,
    choice_probability,
    differences,
    share_above,
)

__all__ = ["PerceptualAnnotator", "PerceptualCrowd", "make_perceptual_crowd", "perceptual_twin"]


@dataclass(frozen=True)
class PerceptualAnnotator:
    """One person: a taste (``temperature``), a threshold (ΔE00), a lapse rate, top-``k``."""

    id: str
    temperature: float = 0.5
    threshold: float = JND_DE00
    lapse: float = 0.0
    k: int | None = None
    carelessness: float = 0.0

    def __post_init__(self) -> None:
        if not self.temperature > 0 or not self.threshold > 0:
            raise InvalidInput("temperature and threshold must be > 0")
        if not 0.0 <= self.lapse <= 1.0 or not 0.0 <= self.carelessness <= 1.0:
            raise InvalidInput("lapse and carelessness must be in [0, 1]")
        if self.k is not None and self.k < 1:
            raise InvalidInput(f"k must be None or >= 1, got {self.k}")

    def preference(self, utilities: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """``P[a, b]``: the probability of choosing ``a`` over ``b`` (``seen``: ΔE00 matrix)."""
        gap = (utilities[:, None] - utilities[None, :]) / self.temperature
        taste = 1.0 / (1.0 + np.exp(-np.clip(gap, -50.0, 50.0)))
        return choice_probability(seen, taste, self.threshold, self.lapse)

    def answer(self, utilities: np.ndarray, seen: np.ndarray, rng: np.random.Generator) -> list:
        """A best-first top-k answer over the items (utilities, ΔE00 matrix ``seen``)."""
        n = len(utilities)
        careless = rng.random() < self.carelessness
        if careless:
            return [int(i) for i in rng.permutation(n)[: self.k or n]]
        prefer = self.preference(utilities, seen)
        left = list(range(n))
        order: list[int] = []
        for _ in range(min(self.k or n, n)):
            visit = [left[i] for i in rng.permutation(len(left))]
            held = visit[0]
            for item in visit[1:]:
                if rng.random() >= prefer[held, item]:
                    held = item
            order.append(held)
            left.remove(held)
        return order


@dataclass(frozen=True)
class PerceptualCrowd:
    """People who see the round's images at ``viewing`` (a phone or desktop tile).

    :meth:`see` turns the round's images into their ΔE00 matrix (the same tiles for everyone),
    :meth:`rank` answers from it. ``render_size`` is the side at which the images should be
    drawn (:attr:`~rankloop.simulation.perception.Viewing.samples`).
    """

    annotators: tuple[PerceptualAnnotator, ...]
    seed: int = 0
    viewing: Viewing = PHONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotators", tuple(self.annotators))
        ids = [a.id for a in self.annotators]
        if not ids or len(set(ids)) != len(ids):
            raise InvalidInput(f"a crowd needs unique annotator ids, got {ids}")

    @property
    def render_size(self) -> int:
        return self.viewing.samples

    def round_images(
        self, render: Callable[..., list[np.ndarray]], points: Any, centre: Any, attention: bool
    ) -> list[np.ndarray]:
        """A round's images at :attr:`render_size`: the candidates (``render(points, size)``),
        then, with ``attention``, the attention image (the render worker's degraded copy of the
        current point)."""
        from gpu_worker.render import degrade

        latents = np.concatenate([np.asarray(points), np.asarray(centre)[None]])
        images = list(render(latents, self.render_size))
        best = images.pop()
        return [*images, degrade(best)] if attention else images

    def figures(self, seen: np.ndarray, candidates: int) -> dict[str, float]:
        """What the round looked like: the share of candidate pairs at least a JND apart
        (``pairs_above``) and their median ΔE00 (``median_de``)."""
        items = list(range(candidates))
        sub = np.asarray(seen)[np.ix_(items, items)][np.triu_indices(candidates, 1)]
        return {
            "pairs_above": share_above(seen, items),
            "median_de": float(np.median(sub)) if len(sub) else 0.0,
        }

    def see(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The ΔE00 matrix of the round's images at this crowd's viewing size."""
        return differences(images, self.viewing)

    def utilities(self, values: ArrayLike, attention: Iterable[int] = ()) -> np.ndarray:
        """Within-round utilities, as the pixel-exact crowd's (``scale="relative"``)."""
        return Crowd((SimulatedAnnotator("u"),)).utilities(values, attention)

    def rank(
        self,
        values: ArrayLike,
        round_number: int = 0,
        attention: Iterable[int] = (),
        attempt: int = 0,
        *,
        seen: np.ndarray,
    ) -> list[tuple[str, list]]:
        """Every person's answer: ``[(annotator_id, best-first order), ...]``.

        ``values`` are the items' hidden objective values (lower = better), ``seen`` their
        ΔE00 matrix (:meth:`see`); attention items get the lowest utility, as in
        :meth:`rankloop.simulation.crowd.Crowd.rank`.
        """
        utilities = self.utilities(values, attention)
        seen = np.asarray(seen, dtype=float)
        if seen.shape != (len(utilities), len(utilities)):
            raise InvalidInput(f"seen must be {len(utilities)} x {len(utilities)}")
        answers = []
        for position, person in enumerate(self.annotators):
            rng = np.random.default_rng([self.seed, int(round_number), position, int(attempt)])
            answers.append((person.id, person.answer(utilities, seen, rng)))
        return answers


def make_perceptual_crowd(
    temperatures: Sequence[float],
    seed: int = 0,
    viewing: Viewing = PHONE,
    k: int | None = None,
    carelessness: Sequence[float] | None = None,
    ids: Sequence[str] | None = None,
) -> PerceptualCrowd:
    """People of the given taste temperatures, each with a threshold drawn log-normally around
    the JND (:data:`~rankloop.simulation.perception.THRESHOLD_SPREAD`) and a lapse rate drawn
    uniformly from ``[0, LAPSE_MAX]``, from ``seed``."""
    rng = np.random.default_rng([seed, 2005])
    count = len(temperatures)
    thresholds = JND_DE00 * np.exp(THRESHOLD_SPREAD * rng.standard_normal(count))
    lapses = rng.uniform(0.0, LAPSE_MAX, count)
    careless = list(carelessness) if carelessness is not None else [0.0] * count
    names = list(ids) if ids is not None else [f"p{i}" for i in range(count)]
    people = tuple(
        PerceptualAnnotator(
            names[i], float(temperatures[i]), float(thresholds[i]), float(lapses[i]), k, careless[i]
        )
        for i in range(count)
    )
    return PerceptualCrowd(people, seed=seed, viewing=viewing)


def perceptual_twin(crowd: Crowd, viewing: Viewing = PHONE) -> PerceptualCrowd:
    """The perceptual counterpart of a pixel-exact crowd of honest and careless annotators:
    the same ids, tastes, ``k`` and carelessness, with thresholds and lapses drawn from its
    seed. Spammers and adversaries have no perceptual counterpart here."""
    members = crowd.annotators
    if any(a.kind not in ("honest", "careless") for a in members):
        raise InvalidInput("perceptual_twin takes honest and careless annotators only")
    return make_perceptual_crowd(
        [a.temperature for a in members],
        seed=crowd.seed,
        viewing=viewing,
        k=members[0].k,
        carelessness=[a.carelessness if a.kind == "careless" else 0.0 for a in members],
        ids=[a.id for a in members],
    )
