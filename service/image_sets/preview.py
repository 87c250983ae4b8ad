"""A dry run of an import, for the owner to look before importing: every item read and checked
as the import would (its images decoded, the same skips), nothing stored and nothing kept, and
the first :data:`~rankloop.core.image_sets.PREVIEW_ITEMS` good items shown with small inline
thumbnails (``data:`` URLs: the images are in no store yet).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from PIL import Image as PILImage

from rankloop.core.errors import InvalidInput
from rankloop.core.image_sets import PREVIEW_ITEMS
from rankloop.core.storage import ObjectStore
from service.image_sets.items import RawItem
from service.image_sets.storing import check_image

PREVIEW_SIDE = 160  # pixels of a preview thumbnail's longer side


class DryStore:
    """A store that answers what it holds and keeps nothing put in it (or deleted from it)."""

    def __init__(self, store: ObjectStore):
        self.store = store

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        return None

    def get(self, key: str) -> bytes:
        return self.store.get(key)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def list(self, prefix: str) -> list[str]:
        return self.store.list(prefix)

    def delete(self, key: str) -> None:
        return None

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        return self.store.url(key, expires_s)


@dataclass(frozen=True)
class PreviewImage:
    model: str | None
    src: str  # a data: URL of a WebP thumbnail


@dataclass(frozen=True)
class PreviewItem:
    line: int
    item_id: str
    prompt: str
    images: list[PreviewImage]


def preview_items(items: Iterable[RawItem], limit: int = PREVIEW_ITEMS) -> list[PreviewItem]:
    """The first ``limit`` items that read and decode whole (the others are the dry run's
    report to name)."""
    found: list[PreviewItem] = []
    for item in _good(items):
        try:
            images = [_preview(raw.model, check_image(raw)[2]) for raw in item.images]
        except InvalidInput:
            continue
        found.append(PreviewItem(item.line, item.item_id, item.prompt, images))
        if len(found) >= limit:
            break
    return found


def _good(items: Iterable[RawItem]) -> Iterator[RawItem]:
    return (item for item in items if item.error is None and item.prompt and item.images)


def _preview(model: str | None, pixels: PILImage.Image) -> PreviewImage:
    thumb = pixels.copy()
    thumb.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="WEBP", quality=70, method=2)
    return PreviewImage(
        model, "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode()
    )
