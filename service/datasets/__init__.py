"""Preference datasets: a campaign's data in the formats preference-tuning scripts read.

- :mod:`service.datasets.source`: the campaign read in keyset batches (constant memory);
- :mod:`service.datasets.rows`: the rows of each table (``rankings``, ``consensus``, ``pairs``)
  and how images travel (``key``, ``url``, ``embed``);
- :mod:`service.datasets.pairs`: how a ranking becomes pairwise preferences (Pick-a-Pic v2);
- :mod:`service.datasets.formats`: JSON lines and Parquet as a stream of byte chunks;
- :mod:`service.datasets.importer`: a rankings export back into a database;
- :mod:`service.datasets.reconsensus`: the consensus of every round computed again, offline.

The API (``GET /api/campaigns/<id>/export``) and ``rankloop export`` both call :func:`export`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy.orm import Session

from rankloop.core.errors import InvalidInput, NotFound
from service.datasets.formats import FORMATS, chunks
from service.datasets.rows import IMAGE_MODES, Batch, Images, table_rows
from service.datasets.rows import TABLES as ROW_TABLES
from service.datasets.source import CampaignSource
from service.datasets.verdict_rows import verdict_rows

# Every table, by name: those built from the rows (rows.TABLES) and the crowd's verdict.
TABLES = {**ROW_TABLES, "verdict": verdict_rows}

__all__ = ["FORMATS", "IMAGE_MODES", "TABLES", "CampaignSource", "Images", "export", "media_type"]


def export(source: CampaignSource | Sequence[CampaignSource], table: str, fmt: str,
           images: Images, progress: Callable[[int], None] | None = None
           ) -> Iterator[bytes]:  # fmt: skip
    """The bytes of ``table`` of the campaign (or of several as one table: a study's) in
    ``fmt``, chunk by chunk.

    ``progress`` is called with the number of rankings read (rankings, pairs) or rounds
    written (consensus tables) as they go.
    """
    if table not in TABLES:
        raise ValueError(f"table {table!r}: use one of {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        _require_pyarrow()
    sources = [source] if isinstance(source, CampaignSource) else list(source)
    if table in ROW_TABLES:
        batches = table_rows(table, sources, images)
    else:  # the verdict: a row per campaign
        batches = itertools.chain.from_iterable(TABLES[table](s, images) for s in sources)
    if progress is not None:
        batches = _counting(batches, progress)
    return chunks(batches, table, fmt, images.embedded)


def _require_pyarrow() -> None:
    """Checked before the first byte: a stream cannot turn into an error response later."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InvalidInput("Parquet needs pyarrow: pip install 'rankloop[export]'") from None


def _counting(batches: Iterator[Batch], progress: Callable[[int], None]) -> Iterator[Batch]:
    for batch in batches:
        progress(batch.units)
        yield batch


def media_type(fmt: str) -> str:
    return {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}[fmt]


def sessions_for(url: str) -> tuple[Callable[[], Session], Callable[[], None]]:
    """A session factory for the rankloop database at ``url`` and the function that disposes of
    it. A database that does not exist, or holds no rankloop tables, is :class:`NotFound` with
    the command that creates it (a SQLite file is never created here as a side effect)."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import sessionmaker

    from service.db import NO_TABLES, make_engine, sqlite_path, upgrade_hint
    from service.models import Campaign

    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise NotFound(f"no database at {path}: {upgrade_hint(url)}")
    engine = make_engine(url)
    try:
        if not inspect(engine).has_table(Campaign.__tablename__):
            raise NotFound(f"{NO_TABLES}: {upgrade_hint(url)}")
    except BaseException:
        engine.dispose()
        raise
    return sessionmaker(engine, expire_on_commit=False), engine.dispose
