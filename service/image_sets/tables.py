"""The items of a table (CSV, JSON lines, Parquet, or a Hugging Face ``datasets`` folder's rows),
one row per item (``image_0``, ``image_1``, ...) or one row per image (``image``), by its columns.

A problem with the whole table (empty, no ``prompt`` column, no image column, not CSV) raises
:class:`InvalidInput`. A problem with one row (not JSON, an empty prompt, an image that is not
there or is outside the folder) becomes that row's item with its ``error`` set, so the importer
can refuse the import with it, or skip the row when the owner asked for that.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any, Protocol

from rankloop.core.errors import InvalidInput
from rankloop.core.image_sets import ITEM_ID, MAX_IMAGE_BYTES
from service.image_sets.items import RawImage, RawItem

# A table's rows: ``(line, row)``, or ``(line, message)`` for a row that could not be read.
Rows = Iterator[tuple[int, dict[str, Any] | str]]


class Files(Protocol):
    """Where a table's image paths point: a folder, or a zip."""

    def file(self, name: str, where: str) -> RawImage: ...


def table_items(rows: Rows, files: Files) -> Iterator[RawItem]:
    """The items of ``rows``, laid out as the first readable row's columns say."""
    held: list[tuple[int, str]] = []  # unreadable rows before the first readable one
    first: tuple[int, dict[str, Any]] | None = None
    for line, row in rows:
        if isinstance(row, str):
            held.append((line, row))
            continue
        first = (line, row)
        break
    if first is None:
        if not held:
            raise InvalidInput("the table is empty: no row")
        return iter([RawItem.bad(line, message) for line, message in held])
    row = first[1]
    columns = ", ".join(map(str, row)) or "none"
    if "prompt" not in row:
        raise InvalidInput(f"the table has no column 'prompt' (its columns: {columns})")
    wide = "image_0" in row
    if not wide and "image" not in row:
        raise InvalidInput(
            f"the table has no image column: 'image_0', 'image_1', ... or 'image' "
            f"(its columns: {columns})"
        )
    chained = _chain(held, first, rows)
    return _wide(chained, files) if wide else _long(chained, files, "item_id" in row)


def _chain(held: list[tuple[int, str]], first: tuple[int, dict[str, Any]], rest: Rows) -> Rows:
    yield from held
    yield first
    yield from rest


def file_rows(suffix: str, stream: Any) -> Rows:
    """``(line, row)`` of a table file, streamed; the stream is closed at the end."""
    with stream:
        if suffix == ".parquet":
            yield from _parquet_rows(stream)
        elif suffix == ".csv":
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            reader = csv.DictReader(text)
            try:
                for row in reader:
                    yield reader.line_num, row
            except (csv.Error, UnicodeDecodeError) as exc:
                # CSV cannot find the next row after a broken one: the whole table is refused.
                raise InvalidInput(f"line {reader.line_num + 1}: not CSV ({exc})") from None
        else:
            for line, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except ValueError as exc:
                    yield line, f"line {line}: not JSON ({exc})"
                    continue
                yield line, row if isinstance(row, dict) else f"line {line}: not a JSON object"


def _parquet_rows(stream: Any) -> Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"not a Parquet file ({exc})") from None
    line = 0
    for batch in table.iter_batches(batch_size=64):  # a row may hold megabytes of images
        for row in batch.to_pylist():
            line += 1
            yield line, row


def _image(value: Any, where: str, files: Files, model: str | None) -> RawImage:
    """One image cell: a path, bytes, or a Hugging Face ``Image`` value."""
    if isinstance(value, dict):  # datasets' Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidInput(f"{where}: {len(data)} bytes, over the limit of {MAX_IMAGE_BYTES}")
        return RawImage(where, lambda: data, model)
    if isinstance(value, str) and value.strip():
        image = files.file(value.strip(), where)
        return RawImage(where, image.read, model)
    raise InvalidInput(f"{where}: no image (a path, or bytes)")


def _prompt(row: dict[str, Any], line: int) -> str:
    prompt = row.get("prompt")
    if prompt is None:
        raise InvalidInput(f"line {line}: no prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput(f"line {line}: an empty prompt")
    return prompt.strip()


def _item_id(row: dict[str, Any], line: int) -> str:
    value = row.get("item_id")
    if value is None or value == "":
        return f"line-{line}"
    text = str(value)
    if not ITEM_ID.match(text):
        raise InvalidInput(f"line {line}: item_id {text[:60]!r}: letters, digits, '.', '-', '_'")
    return text


def _model(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    return None if value is None or value == "" else str(value)


def _wide(rows: Rows, files: Files) -> Iterator[RawItem]:
    for line, row in rows:
        if isinstance(row, str):
            yield RawItem.bad(line, row)
            continue
        try:
            images = []
            n = 0
            while f"image_{n}" in row:
                value = row[f"image_{n}"]
                if value is not None and value != "":
                    where = f"line {line}, image_{n}"
                    images.append(_image(value, where, files, _model(row, f"model_{n}")))
                n += 1
            item = RawItem(line, _item_id(row, line), _prompt(row, line), images)
        except InvalidInput as exc:
            item = RawItem.bad(line, str(exc), row.get("item_id"))
        yield item


def _long(rows: Rows, files: Files, by_id: bool) -> Iterator[RawItem]:
    """Consecutive rows of one item (one ``item_id``, else one prompt) as one item; a bad row
    spoils its item (or, when it says no item, stands alone)."""
    current: RawItem | None = None
    current_key: str | None = None
    for line, row in rows:
        if isinstance(row, str):
            yield RawItem.bad(line, row)
            continue
        try:
            prompt = _prompt(row, line)
            key = _item_id(row, line) if by_id else prompt
        except InvalidInput as exc:
            yield RawItem.bad(line, str(exc), row.get("item_id"))
            continue
        if current is None or key != current_key:
            if current is not None:
                yield current
            item_id = key if by_id else f"line-{line}"
            current, current_key = RawItem(line, item_id, prompt, []), key
        if current.error is not None:
            continue
        try:
            if current.prompt != prompt:
                raise InvalidInput(f"line {line}: item {key!r} has two prompts")
            image = _image(row.get("image"), f"line {line}, image", files, _model(row, "model"))
            current.images.append(image)
        except InvalidInput as exc:
            current = RawItem.bad(current.line, str(exc), current.item_id)
    if current is not None:
        yield current


__all__ = ["Files", "Rows", "file_rows", "table_items"]
