"""The one round step every runner shares: the items shown, the candidate feed, the tell.

A round shows the optimizer's ``n`` candidates (item ``i`` is the optimizer's index ``i``) and,
when attention checks are on, one more item at index ``n``: a degraded copy of the current best,
which belongs below every candidate in an honest ranking. The consensus ranks all shown items;
the optimizer must hear only about its candidates. The render worker
(:mod:`gpu_worker.render`), the coordinator (which maps image positions to indices) and the
simulator (:mod:`rankloop.simulation.campaign`) all go through these three functions, so the attention
item goes in and comes out the same way everywhere. :func:`pixel_effect` measures, on a round's
renders, how far a latent move moves the pixels (the optimizer keeps candidates visible with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rankloop.core.contracts import ConsensusFeed, Feed, ImageRole
from rankloop.core.errors import InvalidInput


class ShownItem(Protocol):
    """An item of a round as the consensus saw it: ``position`` is its item number in the
    consensus, ``index`` the worker's index (the optimizer's, for a candidate)."""

    @property
    def position(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class Item:
    position: int
    index: int
    role: str


def shown_items(n: int, attention: bool) -> list[Item]:
    """The items of a round of ``n`` candidates, in worker order: candidates, then the
    attention item (index ``n``) when ``attention`` is on."""
    items = [Item(i, i, ImageRole.CANDIDATE) for i in range(n)]
    if attention:
        items.append(Item(n, n, ImageRole.ATTENTION))
    return items


def candidate_feed(
    order: Sequence[int],
    pairwise: Sequence[Sequence[float]] | np.ndarray | None,
    items: Sequence[ShownItem],
    feed: str,
    agreement: float | None = None,
    raters: int | None = None,
) -> ConsensusFeed:
    """The consensus restricted to the candidates, in optimizer indices.

    Parameters
    ----------
    order : sequence of int
        The consensus order over all shown items (positions), best first.
    pairwise : (p, p) matrix or None
        The consensus's weighted pairwise evidence over all shown items (positions).
    items : sequence of ShownItem
        The round's items; the attention item is dropped.
    feed : {"order", "pairwise"}
        ``"pairwise"`` passes the candidates' sub-matrix on as well (when it holds any
        evidence); ``"order"`` passes only the order.
    agreement, raters : float, int, optional
        The consensus's Kendall's W and how many rankings it merged, passed on for the
        optimizer's visible floor (:meth:`~rankloop.core.optimizer.RankSGD.note_agreement`).
    """
    candidates = sorted((i for i in items if i.role == ImageRole.CANDIDATE), key=lambda i: i.index)
    by_position = {i.position: i for i in candidates}
    result = ConsensusFeed(
        order=[by_position[p].index for p in order if p in by_position],
        agreement=None if agreement is None else float(agreement),
        raters=raters,
    )
    if feed == Feed.PAIRWISE and pairwise is not None:
        matrix = np.asarray(pairwise, dtype=float)
        positions = [i.position for i in candidates]
        sub = matrix[np.ix_(positions, positions)]
        # Evidence only about the attention item says nothing about the candidates: the
        # optimizer refuses an empty matrix, so the order alone goes then.
        if sub.sum() > 0:
            result.pairwise = sub.tolist()
    return result


def tell(optimizer: Any, consensus: ConsensusFeed, n: int) -> None:
    """Tell ``optimizer`` (a :class:`~rankloop.core.optimizer.RankSGD` that asked ``n`` points)
    what the crowd preferred: the pairwise evidence when there is some, else the order; and,
    when the consensus says it and the optimizer listens, how consistently the crowd ranked."""
    if consensus.agreement is not None and hasattr(optimizer, "note_agreement"):
        optimizer.note_agreement(consensus.agreement, consensus.raters)
    if consensus.pairwise is not None:
        matrix = np.asarray(consensus.pairwise, dtype=float)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < n:
            raise InvalidInput(
                f"consensus.pairwise must be a square matrix over the {n} candidates "
                f"(or {n + 1} with the attention image), got shape {matrix.shape}"
            )
        optimizer.tell(preferences=matrix[:n, :n])
        return
    if not consensus.order:
        raise InvalidInput("consensus.order must be a non-empty list of candidate indices")
    flat = []
    for item in consensus.order:
        if not 0 <= item <= n:
            raise InvalidInput(f"consensus.order holds {item!r}: indices run from 0 to {n - 1}")
        if item < n:  # n is the attention item: not an optimizer point
            flat.append(item)
    optimizer.tell(flat)


def pixel_effect(
    points: np.ndarray,
    images: Sequence[np.ndarray],
    centre: np.ndarray,
    centre_image: np.ndarray,
) -> float | None:
    """The generator's pixel-space effect of a latent move, measured on one round's renders.

    The median over the candidates that differ from ``centre`` of (RMS pixel change, on a 0..1
    scale, against ``centre_image``) / (latent distance to ``centre``); ``None`` when no
    candidate differs. The render worker notes it with ``optimizer.note_pixel_effect`` before
    saving the state, so later rounds keep their candidates visibly different but close.

    Parameters
    ----------
    points : (n, ...) array
        The candidates' latents, in the proposal's order.
    images : sequence of (h, w, c) uint8 arrays
        Their renders, same order (the attention image, if any, left out).
    centre, centre_image : array, (h, w, c) uint8 array
        The current point and its render.
    """
    base = np.asarray(centre_image, dtype=np.float64) / 255.0
    flat_centre = np.asarray(centre, dtype=np.float64).reshape(-1)
    ratios = []
    for point, image in zip(np.asarray(points), images, strict=True):
        distance = float(np.linalg.norm(np.asarray(point, np.float64).reshape(-1) - flat_centre))
        if distance > 0.0:
            change = np.asarray(image, dtype=np.float64) / 255.0 - base
            ratios.append(float(np.sqrt(np.mean(change**2))) / distance)
    positive = [r for r in ratios if r > 0.0]
    return float(np.median(positive)) if positive else None


__all__ = ["Item", "ShownItem", "candidate_feed", "pixel_effect", "shown_items", "tell"]
