"""A campaign's delivered images in one zip: the delivered image (the optimizer's point,
rendered clean) of every rendered round, full size, as ``round-NNNN.<ext>``, stored uncompressed
(images are compressed already). Served by ``GET /api/campaigns/<id>/images.zip`` and written
by ``rankloop export --images-zip``; read from the store one image at a time."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Round


def delivered_keys(session: Session, campaign_id: str) -> list[tuple[int, str]]:
    """Each rendered round's number and its delivered image's store key, in round order."""
    rows = session.execute(
        select(Round.number, Round.best_key)
        .where(Round.campaign_id == campaign_id, Round.best_key.is_not(None))
        .order_by(Round.number)
    ).all()
    return [(number, str(key)) for number, key in rows]


def entry_name(number: int, key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[-1] if "." in name else "png"
    return f"round-{number:04d}.{extension}"


def write_zip(
    file: IO[bytes],
    keys: list[tuple[int, str]],
    get: Callable[[str], bytes],
    progress: Callable[[int], object] | None = None,
) -> int:
    """Write the images of ``keys`` (from :func:`delivered_keys`) to ``file`` as a zip, one
    read from the store at a time; the number written back."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for number, key in keys:
            archive.writestr(entry_name(number, key), get(key))
            if progress is not None:
                progress(1)
    return len(keys)


__all__ = ["delivered_keys", "entry_name", "write_zip"]
