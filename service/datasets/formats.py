"""The export formats: JSON lines and Parquet, both written as a stream of byte chunks.

Parquet goes through ``pyarrow.parquet.ParquetWriter`` one row group per batch of rows, into a
sink whose bytes are handed on after every batch: memory holds one batch, whatever the size of
the campaign. pyarrow is imported here only (``pip install rankloop[export]``), never by the
coordinator's other modules.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from service.datasets import pickapic

if TYPE_CHECKING:
    from service.datasets.rows import Batch

FORMATS = ("jsonl", "parquet")
ROW_GROUP = 2000  # rows per Parquet row group (and per chunk of the stream)
EMBEDDED_ROW_GROUP = 64  # with image bytes inside, a row weighs kilobytes to megabytes
# A pairs row's two images are indices into a dictionary of the row group's distinct images
# (a round's m), so its row groups can be longer: the file stores each image once per row
# group, the writer holds the distinct images only, and a reader decodes a row group's bytes.
PAIRS_EMBEDDED_ROW_GROUP = 512
IMAGE_COLUMNS = ("jpg_0", "jpg_1")  # the pairs tables' image bytes, dictionary-encoded
DICTIONARY_PAGE = 2**30  # pyarrow's default (1 MB) falls back to one copy per row past it


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # naive UTC in the database
        return value.isoformat() + "Z"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def jsonl_chunks(batches: Iterable[Batch], batch: int = ROW_GROUP) -> Iterator[bytes]:
    """JSON lines, a chunk per ``batch`` rows at most."""
    for columns, rows, _ in batches:
        names = list(columns)
        values = zip(*(c if isinstance(c, list) else c.to_list() for c in columns.values()),
                     strict=True)  # fmt: skip
        for _ in range(0, rows, batch):
            lines = [
                json.dumps(dict(zip(names, row, strict=True)), default=_json_default)
                for row in itertools.islice(values, batch)
            ]
            yield ("\n".join(lines) + "\n").encode()


def schema(table: str):
    """The Parquet schema of ``table`` (the JSONL rows have the same fields)."""
    import pyarrow as pa

    string, int64, float64, boolean = pa.string(), pa.int64(), pa.float64(), pa.bool_()
    timestamp = pa.timestamp("us", tz="UTC")
    strings = pa.list_(string)
    if table == "rankings":
        fields = [
            ("campaign_id", string), ("prompt", string), ("negative_prompt", string),
            ("generator", string), ("model", string), ("round", int64),
            ("round_kind", string), ("ranking_id", int64), ("settings", string),
            ("seed", int64), ("state_key", string), ("previous_state_key", string),
            ("image_ids", strings), ("image_keys", strings), ("image_roles", strings),
            ("image_indices", pa.list_(int64)), ("image_models", strings), ("image_refs", strings),
            ("images", pa.list_(pa.binary())), ("annotator_id", string),
            ("order", pa.list_(strings)), ("positions", pa.list_(pa.list_(int64))),
            ("top_k", int64), ("n_ranked", int64), ("ties", boolean),
            ("attention_passed", boolean), ("late", boolean), ("time_taken_s", float64),
            ("leased_at", timestamp), ("submitted_at", timestamp), ("weight", float64),
        ]  # fmt: skip
    elif table == "consensus":
        weight = pa.struct([("annotator_id", string), ("weight", float64)])
        fields = [
            ("campaign_id", string), ("round", int64), ("round_kind", string),
            ("method", string), ("n_rankings", int64), ("close_reason", string),
            ("order", pa.list_(int64)),
            ("order_image_ids", strings), ("scores", pa.list_(float64)),
            ("agreement", float64), ("krippendorff_alpha", float64),
            ("weights", pa.list_(weight)),
            ("winner_image_id", string), ("image_ids", strings), ("image_keys", strings),
            ("image_roles", strings), ("image_refs", strings), ("created_at", timestamp),
        ]  # fmt: skip
    elif table in ("pairs", "consensus_pairs"):
        fields = [
            ("caption", string), ("jpg_0", pa.binary()), ("jpg_1", pa.binary()),
            ("label_0", float64), ("label_1", float64), ("image_0_uid", string),
            ("image_1_uid", string), ("best_image_uid", string), ("model_0", string),
            ("model_1", string), ("user_id", int64), ("ranking_id", int64),
            ("created_at", timestamp), ("are_different", boolean), ("has_label", boolean),
            ("image_0_url", string), ("image_1_url", string),
            ("image_0_ref", string), ("image_1_ref", string), ("campaign_id", string),
            ("round", int64), ("pair_source", string), ("attention_passed", boolean),
            ("weight", float64), ("annotator_id", string), ("num_example_per_prompt", int64),
        ]  # fmt: skip
        names = [name for name, _ in fields]
        return pa.schema(fields, metadata={b"pandas": pickapic.pandas_metadata(names)})
    elif table == "verdict":
        fields = [
            ("campaign_id", string), ("prompt", string), ("share", float64), ("low", float64),
            ("high", float64), ("n", int64), ("prefer_delivered", int64),
            ("prefer_start", int64), ("ties", int64), ("from_non_steering", int64),
            ("summary", string), ("verdict_rounds", pa.list_(int64)),
            ("start_image_ref", string), ("delivered_image_ref", string),
        ]  # fmt: skip
    else:
        raise ValueError(f"unknown table {table!r}")
    return pa.schema(fields)


def row_group(table: str, embedded: bool) -> int:
    """Rows per Parquet row group of ``table`` (``embedded``: image bytes inside)."""
    if not embedded:
        return ROW_GROUP
    return PAIRS_EMBEDDED_ROW_GROUP if table in ("pairs", "consensus_pairs") else EMBEDDED_ROW_GROUP


def writer_schema(table: str, embedded: bool) -> Any:
    """The Arrow schema the writer is given: :func:`schema`, but with embedded images a pairs
    table's image columns are dictionaries (the file still reads as :func:`schema`: see
    :func:`parquet_writer`)."""
    import pyarrow as pa

    plain = schema(table)
    if not (embedded and table in ("pairs", "consensus_pairs")):
        return plain
    shared = pa.dictionary(pa.int32(), pa.binary())
    fields = [pa.field(f.name, shared) if f.name in IMAGE_COLUMNS else f for f in plain]
    return pa.schema(fields, metadata=plain.metadata)


def parquet_writer(where: Any, table: str, embedded: bool) -> Any:
    """A ``ParquetWriter`` for ``table``. With dictionary columns the Arrow schema is not stored
    in the file, so that readers (``datasets``, pandas) see plain ``binary`` columns, as
    :func:`schema` has them; the pandas metadata (nullable dtypes) is written on its own."""
    import pyarrow.parquet as pq

    table_schema = writer_schema(table, embedded)
    if table_schema.equals(schema(table)):
        return pq.ParquetWriter(where, table_schema, compression="zstd")
    writer = pq.ParquetWriter(where, table_schema, compression="zstd", store_schema=False,
                              dictionary_pagesize_limit=DICTIONARY_PAGE)  # fmt: skip
    writer.add_key_value_metadata(
        {k.decode(): v.decode() for k, v in table_schema.metadata.items()}
    )
    return writer


def row_group_table(batches: list[Any], table_schema: Any) -> Any:
    """Record batches as one row group's table: dictionary columns unified into one dictionary
    and one chunk, which pyarrow writes as they are (a dictionary that changes between chunks
    makes it decode the bytes and hash every one)."""
    import pyarrow as pa

    table = pa.Table.from_batches(batches, table_schema)
    if any(pa.types.is_dictionary(f.type) for f in table_schema):
        table = table.unify_dictionaries().combine_chunks()
    return table


def decoded_nbytes(table: Any) -> int:
    """``table.nbytes`` with its dictionary columns decoded: the Arrow bytes a reader holds
    (what a dataset card's ``num_bytes`` counts)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in table.columns:
        if not pa.types.is_dictionary(column.type):
            total += column.nbytes
            continue
        for chunk in column.chunks:
            lengths = pc.binary_length(chunk.dictionary).take(chunk.indices)
            total += (pc.sum(lengths).as_py() or 0) + 4 * (len(chunk) + 1)
    return total


class _Chunks:
    """A write-only file for ParquetWriter that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.parts.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def record_batch(columns: dict[str, Any], table_schema: Any) -> Any:
    """Columns (lists, or :class:`~service.datasets.rows.Repeat` and ``Groups``) as an Arrow
    record batch of ``table_schema``."""
    import pyarrow as pa

    arrays = {
        k: v if isinstance(v, list) else v.to_arrow(table_schema.field(k).type)
        for k, v in columns.items()
    }
    return pa.RecordBatch.from_pydict(arrays, schema=table_schema)


def parquet_chunks(batches: Iterable[Batch], table: str, embedded: bool = False
                   ) -> Iterator[bytes]:  # fmt: skip
    """Parquet bytes, a row group per ``batch`` rows (naive datetimes are UTC).

    The columns go to Arrow a row group's share at a time (``from_pydict``, no dict per row), so
    that rows carrying image bytes are converted 64 at a time, whatever the batch they came in.
    """
    import pyarrow as pa

    table_schema = writer_schema(table, embedded)
    batch = row_group(table, embedded)
    sink = _Chunks()
    writer = parquet_writer(pa.PythonFile(sink, mode="w"), table, embedded)
    pending: list[Any] = []  # record batches of the row group being filled
    filled = 0

    def flush() -> bytes:
        writer.write_table(row_group_table(pending, table_schema), row_group_size=batch)
        pending.clear()
        return sink.take()

    try:
        for columns, rows, _ in batches:
            start = 0
            while start < rows:
                take = min(rows - start, batch - filled)
                part = (
                    columns
                    if take == rows
                    else {k: v[start : start + take] for k, v in columns.items()}
                )
                pending.append(record_batch(part, table_schema))
                start, filled = start + take, filled + take
                if filled == batch:
                    filled = 0
                    yield flush()
        if pending:
            yield flush()
    finally:
        writer.close()
    yield sink.take()


def chunks(batches: Iterable[Batch], table: str, fmt: str, embedded: bool = False
           ) -> Iterator[bytes]:  # fmt: skip
    if fmt == "jsonl":
        return jsonl_chunks(batches, row_group(table, embedded))
    if fmt == "parquet":
        return parquet_chunks(batches, table, embedded)
    raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
