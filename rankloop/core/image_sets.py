"""Image sets: the owner's own images ranked, one round per item, without the optimizer.

What an item is and its limits, written once (the import in :mod:`service.image_sets` and the
tests read them), and how an image is named in the object store: by its content
(:func:`blob_key`), so the same image in two items, two imports or two campaigns is stored once,
and an import that failed half-way finds what it already stored when it is run again.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Literal

from rankloop.core.errors import InvalidInput

MIN_IMAGES: Final = 2  # per item: fewer ranks nothing
MAX_IMAGES: Final = 16  # per item: more than a task page shows at once
MAX_IMAGE_BYTES: Final = 20 * 2**20  # one image file
MAX_ITEMS: Final = 1_000_000  # per import
MAX_ITEM_ID: Final = 200  # characters of an item id
ITEM_ID: Final = re.compile(r"^[\w.\-]{1,200}$")  # what names an item (a folder name, a column)
MAX_MODEL: Final = 300  # characters of a model name (rounds store it per image)
# Items open at once per image set; the rest wait (queued) and open as others close. Choosing a
# task weighs every open round (at 20,000 open items a lease took about 500 ms on PostgreSQL),
# and this many serve OPEN_ITEMS x quorum annotators at the same time.
OPEN_ITEMS: Final = 200
# What an import does with a malformed item: refuse the whole import (nothing kept), or import
# the good items and report the skipped ones (the owner's choice, per import).
OnError = Literal["abort", "skip"]
ON_ERROR: Final[tuple[OnError, ...]] = ("abort", "skip")
MAX_SKIPS_REPORTED: Final = 1000  # skipped rows listed in a reply; beyond, only counted
PREVIEW_ITEMS: Final = 4  # items a dry run shows, with their images

# Formats an image may have, by their first bytes: the file's extension and its media type.
FORMATS: Final = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
BLOB_PREFIX: Final = "blobs"


def sniff(data: bytes) -> str:
    """The format of an image file by its first bytes (``png``, ``jpg`` or ``webp``), or
    :class:`InvalidInput`: an extension may lie, the bytes do not."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise InvalidInput("not a PNG, JPEG or WebP image")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_key(data_digest: str, fmt: str) -> str:
    """The object-store key of an image by its SHA-256 (hex) and format."""
    return f"{BLOB_PREFIX}/{data_digest[:2]}/{data_digest}.{fmt}"


def thumb_key(data_digest: str) -> str:
    """The key of the WebP thumbnail of the image with this SHA-256."""
    return f"{BLOB_PREFIX}/{data_digest[:2]}/{data_digest}.thumb.webp"


BLOB_KEY: Final = re.compile(r"^blobs/[0-9a-f]{2}/[0-9a-f]{64}\.(png|jpg|webp|thumb\.webp)$")
MAX_UPLOAD_BYTES: Final = 8 * 2**30  # one upload of items (POST /api/campaigns/<id>/items)
# What an upload of items may be, by its Content-Type: the suffix it is read as.
UPLOAD_TYPES: Final = {
    "application/zip": ".zip",
    "text/csv": ".csv",
    "application/x-ndjson": ".jsonl",
    "application/vnd.apache.parquet": ".parquet",
}
