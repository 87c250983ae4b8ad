"""A dataset folder a training script loads as it is: one table of one or more campaigns as
Parquet shards per split (``data/<split>-00000-of-00001.parquet``, the Hub's layout), split by
prompt (:mod:`service.datasets.splits`), with a dataset card (``README.md``,
:mod:`service.datasets.card`) whose YAML header names the splits' files, features and sizes.

``datasets.load_dataset(DIR)`` reads it through the card, ``load_dataset("parquet",
data_files={"train": "DIR/data/train-*.parquet", ...})`` through the files alone. Rows are read
in the export's batches and written a row group at a time: memory holds a row group per split,
whatever the size of the campaigns. The folder appears whole or not at all.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankloop.core.errors import InvalidInput
from service.datasets.formats import (
    decoded_nbytes,
    parquet_writer,
    record_batch,
    row_group,
    row_group_table,
    writer_schema,
)
from service.datasets.rows import Images, Repeat, table_rows
from service.datasets.source import CampaignSource
from service.datasets.splits import SPLITS, Splitter

# The column each table names its prompt in (the consensus table has none: it cannot be split).
PROMPT_COLUMNS = {"pairs": "caption", "consensus_pairs": "caption", "rankings": "prompt"}
SHARD_BYTES = 500 * 2**20  # Arrow bytes per shard: the Hub's own default max_shard_size
DATA = "data"


@dataclass
class SplitSummary:
    """What went into one split."""

    name: str
    num_examples: int = 0
    num_bytes: int = 0  # Arrow bytes, as the card's dataset_info counts them
    files: list[str] = field(default_factory=list)  # relative to the folder
    prompts: set[str] = field(default_factory=set)


class _SplitWriter:
    """One split's shards: record batches gathered into row groups, a new shard past
    :data:`SHARD_BYTES`."""

    def __init__(self, folder: Path, summary: SplitSummary, table: str, embedded: bool,
                 row_group: int, shard_bytes: int):  # fmt: skip
        self.folder, self.summary, self.table, self.embedded = folder, summary, table, embedded
        self.schema = writer_schema(table, embedded)
        self.row_group, self.shard_bytes = row_group, shard_bytes
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.writer: Any = None
        self.in_shard = 0
        self.paths: list[Path] = []

    def add(self, batch: Any) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        if self.pending_rows >= self.row_group:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        table = row_group_table(self.pending, self.schema)
        self.pending, self.pending_rows = [], 0
        if self.writer is None:
            path = self.folder / DATA / f"{self.summary.name}-{len(self.paths):05d}.parquet"
            self.paths.append(path)
            self.writer = parquet_writer(path, self.table, self.embedded)
        self.writer.write_table(table, row_group_size=self.row_group)
        self.summary.num_examples += table.num_rows
        self.summary.num_bytes += decoded_nbytes(table)
        self.in_shard += table.nbytes
        if self.in_shard >= self.shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer, self.in_shard = None, 0

    def close(self) -> None:
        """Write what is left and name the shards ``<split>-<i>-of-<n>.parquet``."""
        self._flush()
        self._close_shard()
        n = len(self.paths)
        for i, path in enumerate(self.paths):
            final = path.with_name(f"{self.summary.name}-{i:05d}-of-{n:05d}.parquet")
            path.rename(final)
            self.summary.files.append(f"{DATA}/{final.name}")

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_splits(sources: Sequence[CampaignSource], table: str, images: Images, folder: Path,
                 splitter: Splitter, progress: Callable[[int], None] | None = None,
                 shard_bytes: int = SHARD_BYTES) -> dict[str, SplitSummary]:  # fmt: skip
    """The rows of ``table`` of every source, each in the split of its prompt, as Parquet
    shards under ``folder/data``; returns what each split holds (empty splits left out)."""
    if table not in PROMPT_COLUMNS:
        raise InvalidInput(f"a dataset folder holds one of {', '.join(PROMPT_COLUMNS)}")
    (folder / DATA).mkdir(parents=True, exist_ok=True)
    table_schema = writer_schema(table, images.embedded)
    rows = row_group(table, images.embedded)
    summaries = {name: SplitSummary(name) for name in SPLITS}
    writers = {
        name: _SplitWriter(folder, summaries[name], table, images.embedded, rows, shard_bytes)
        for name in SPLITS
    }
    column = PROMPT_COLUMNS[table]
    try:
        for batch in table_rows(table, sources, images):
            if batch.rows:
                _route(batch.columns, batch.rows, column, table_schema, splitter, writers)
            if progress is not None:
                progress(batch.units)
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return {name: s for name, s in summaries.items() if s.num_examples}


def _route(columns: dict[str, Any], rows: int, column: str, table_schema: Any,
           splitter: Splitter, writers: dict[str, _SplitWriter]) -> None:  # fmt: skip
    """The rows of one batch, each to the writer of its prompt's split."""
    import pyarrow as pa

    batch = record_batch(columns, table_schema)
    prompts = columns[column]
    if isinstance(prompts, Repeat):  # one prompt for the batch: no mask
        writers[splitter(prompts.value)].summary.prompts.add(prompts.value)
        writers[splitter(prompts.value)].add(batch)
        return
    names = [splitter(p) for p in prompts]
    for name in dict.fromkeys(names):
        writer = writers[name]
        writer.summary.prompts.update(p for p, n in zip(prompts, names, strict=True) if n == name)
        part = batch if len(set(names)) == 1 else batch.filter(pa.array([n == name for n in names]))
        writer.add(part)


def write_dataset(sources: Sequence[CampaignSource], table: str, images: Images, out: Path,
                  splitter: Splitter, card: Callable[[dict[str, SplitSummary], Path], str],
                  progress: Callable[[int], None] | None = None) -> dict[str, SplitSummary]:  # fmt: skip
    """:func:`write_splits` and the card (``card(summaries, folder)``: the README's text) into
    ``out``,
    which must not exist or be empty; built beside it and renamed, so it appears whole."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"{out} exists and is not an empty folder: name a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        summaries = write_splits(sources, table, images, partial, splitter, progress)
        if not summaries:
            raise InvalidInput(f"no {table} rows to write: the campaigns hold no rankings yet")
        (partial / "README.md").write_text(card(summaries, partial), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return summaries
