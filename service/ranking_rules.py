"""The rules of a ranking, pure: what an annotator sees, what a submitted order means, and
whether it passed the attention check. No database here: images are anything with an ``id``, a
``position`` and a ``role`` (an ORM :class:`~service.models.Image` or a cached
:class:`~service.caches.ImageView`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from rankloop.core.contracts import ImageRole
from rankloop.core.errors import InvalidInput


class ShownImage(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def role(self) -> str: ...


_I = TypeVar("_I", bound=ShownImage)


def display_order(annotator_id: str, round_id: int, images: Sequence[_I]) -> list[_I]:
    """The round's images in this annotator's order: shuffled, the same on every reload (so
    position bias averages out over annotators). Sorted by a digest of the image's random id,
    never by shuffling the images in position order: an annotator who can reproduce the order
    (their id is theirs to know) learns nothing about which image is which position, the
    attention image's included."""

    def key(image: _I) -> bytes:
        return hashlib.sha256(f"{annotator_id}:{round_id}:{image.id}".encode()).digest()

    return sorted(images, key=key)


def parse_order(
    order: list[Any], images: Sequence[ShownImage], k: int | None, allow_ties: bool
) -> list[Any]:
    """Image ids (best first; a list = tied ids) -> image positions, or InvalidInput saying why."""
    by_id = {image.id: image.position for image in images}
    seen: set[str] = set()
    positions: list[Any] = []
    for element in order:
        group = element if isinstance(element, list) else [element]
        if isinstance(element, list) and not allow_ties:
            raise InvalidInput("this campaign does not allow ties: send a flat list of image ids")
        if not group:
            raise InvalidInput("an empty tie group: list at least one image id in it")
        for image_id in group:
            if image_id not in by_id:
                raise InvalidInput(f"image {image_id!r} is not part of this task")
            if image_id in seen:
                raise InvalidInput(f"image {image_id!r} is ranked twice")
            seen.add(image_id)
        tied = [by_id[i] for i in group]
        positions.append(tied if isinstance(element, list) else tied[0])
    required = min(k, len(images)) if k else len(images)
    # A full ranking of n items is determined by its first n - 1.
    if len(seen) < min(required, len(images) - 1):
        raise InvalidInput(
            f"rank at least {min(required, len(images) - 1)} images (got {len(seen)}), best first"
        )
    return positions


def attention_passed(positions: list[Any], images: Sequence[ShownImage]) -> bool | None:
    """False when the degraded copy is ranked above any candidate (ranked or not) or tied with
    one (an all-tied answer must not pass without looking); None when the round has no
    attention image."""
    attention = {i.position for i in images if i.role == ImageRole.ATTENTION}
    if not attention:
        return None
    flat = [p if isinstance(p, list) else [p] for p in positions]
    for rank, group in enumerate(flat):
        if attention & set(group):
            if set(group) - attention:
                return False
            below = {p for g in flat[rank + 1 :] for p in g}
            ranked = {p for g in flat for p in g}
            unranked_candidates = {i.position for i in images} - ranked - attention
            return not (below - attention) and not unranked_candidates
    return True


__all__ = ["ShownImage", "attention_passed", "display_order", "parse_order"]
