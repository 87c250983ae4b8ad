"""A study's export: its campaigns' tables as one dataset, campaign by campaign in the prompt
list's order. Every row of every table (the ``verdict`` table's too: one row per campaign)
already names its campaign and prompt (:mod:`service.datasets.rows`), so the campaigns' rows
are simply chained into one stream, and into one Parquet file (not files concatenated) when
Parquet is asked for."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from sqlalchemy.orm import Session

from rankloop.core.errors import InvalidInput
from service.datasets import TABLES
from service.datasets.formats import EMBEDDED_ROW_GROUP, ROW_GROUP, chunks
from service.datasets.rows import Images
from service.datasets.source import CampaignSource


def study_table(
    sessions: Callable[[], Session],
    campaign_ids: list[str],
    table: str,
    fmt: str,
    images: Images,
) -> Iterator[bytes]:
    """The bytes of ``table`` of every campaign in ``campaign_ids``, in ``fmt``. Checked before
    the first byte (a stream cannot turn into an error response later)."""
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InvalidInput("Parquet needs pyarrow: pip install 'rankloop[export]'") from None
    rows = TABLES[table]
    batches = itertools.chain.from_iterable(
        rows(CampaignSource(sessions, campaign_id), images) for campaign_id in campaign_ids
    )
    return chunks(batches, table, fmt, EMBEDDED_ROW_GROUP if images.embedded else ROW_GROUP)


__all__ = ["study_table"]
