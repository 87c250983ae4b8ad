"""What a source gives the importer: items, each with its images (read only when stored), and
the line a problem with it is reported on. An item a source could not make sense of comes with
its ``error`` instead of raising, so the importer decides: refuse the import, or skip the item
and report it (the owner's choice, :data:`~rankloop.core.image_sets.ON_ERROR`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RawImage:
    where: str  # how the owner names it: a path, or "image_2"
    read: Callable[[], bytes]  # its bytes (checked against MAX_IMAGE_BYTES before reading)
    model: str | None


@dataclass(frozen=True)
class RawItem:
    line: int  # 1-based: the table's row (its first, for an item of several rows) or folder
    item_id: str
    prompt: str
    images: list[RawImage] = field(default_factory=list)
    error: str | None = None  # why the item cannot be imported, naming its line

    @classmethod
    def bad(cls, line: int, error: str, item_id: Any = None) -> RawItem:
        name = f"line-{line}" if item_id is None or item_id == "" else str(item_id)[:200]
        return cls(line, name, "", [], error)
