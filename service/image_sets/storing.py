"""An item's images checked and put in the object store once, by content
(:func:`rankloop.core.image_sets.blob_key`), with a WebP thumbnail each; and the item's
attention image: :func:`rankloop.core.attention.degrade` of one of its images (picked by the
item id's hash), in that image's format and size, so neither its URL nor its type tells it apart.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from rankloop.core.errors import InvalidInput
from rankloop.core.image_sets import FORMATS, blob_key, digest, sniff, thumb_key
from rankloop.core.storage import THUMB_SIDE, ObjectStore
from rankloop.imaging import degrade
from service.image_sets.items import RawImage

PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
MAX_PIXELS = 40_000_000  # a decompression bomb is refused, not decoded
KNOWN_KEYS = 4096  # recent keys not asked of the store again


class Blobs:
    """Puts images by content, asking the store only once per digest in an import."""

    def __init__(self, store: ObjectStore):
        self.store = store
        # Keys stored or found lately in this import (bounded: memory stays flat).
        self.known: OrderedDict[str, None] = OrderedDict()
        self.stored = self.reused = 0

    def put(self, data: bytes, fmt: str, pixels: PILImage.Image) -> tuple[str, str, bool]:
        found = digest(data)
        key = blob_key(found, fmt)
        # An image no larger than a thumbnail is its own (one file, one store call fewer).
        small = max(pixels.size) <= THUMB_SIDE
        thumb = key if small else thumb_key(found)
        if key in self.known:
            self.reused += 1
            return key, thumb, False
        new = not (self.store.exists(key) and (small or self.store.exists(thumb)))
        if new:
            self.store.put(key, data, FORMATS[fmt])
            if not small:
                self.store.put(thumb, _thumbnail(pixels), "image/webp")
            self.stored += 1
        else:
            self.reused += 1
        self.known[key] = None
        if len(self.known) > KNOWN_KEYS:
            self.known.popitem(last=False)
        return key, thumb, new


def check_image(raw: RawImage) -> tuple[bytes, str, PILImage.Image]:
    """The image's bytes, format and decoded pixels, or :class:`InvalidInput` naming it."""
    data = raw.read()
    try:
        fmt = sniff(data)
    except InvalidInput as exc:
        raise InvalidInput(f"{raw.where}: {exc}") from None
    try:
        with PILImage.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise InvalidInput(f"{raw.where}: {opened.width}x{opened.height} pixels, too many")
            pixels = opened.convert("RGB")  # decodes it all: a truncated file fails here
    except UnidentifiedImageError:  # its message names a BytesIO object: no help to the owner
        raise InvalidInput(f"{raw.where}: unreadable image (torn or not an image)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{raw.where}: unreadable image ({exc})") from None
    return data, fmt, pixels


def _thumbnail(pixels: PILImage.Image) -> bytes:
    thumb = pixels.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="WEBP", quality=80, method=2)
    return buffer.getvalue()


def attention_source(item_id: str, count: int) -> int:
    """Which of an item's ``count`` images its attention image degrades (stable per item)."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=4).digest()) % count


def attention_image(pixels: PILImage.Image, fmt: str) -> bytes:
    """:func:`degrade` of ``pixels``, encoded in ``fmt``."""
    look = PILImage.fromarray(degrade(np.asarray(pixels)))
    buffer = io.BytesIO()
    options = {"quality": 90} if fmt in ("jpg", "webp") else {"compress_level": 6}
    look.save(buffer, format=PIL_FORMATS[fmt], **options)
    return buffer.getvalue()
