"""The items of an image set, read one at a time from where the owner keeps them, each named by
the line (a table's row, or the item's place in a folder tree) a problem would be reported on.

Sources:

- a folder tree: one folder per item (its name is the item id) holding ``prompt.txt`` and the
  item's images (``.png``, ``.jpg``, ``.jpeg``, ``.webp``; each file's stem is its model);
- a table, ``.csv``, ``.jsonl`` or ``.parquet``, with a ``prompt`` column and either
  ``image_0``, ``image_1``, ... (one row per item; ``model_0``, ... optional) or ``image`` (one
  row per image; ``model`` optional; consecutive rows with one ``item_id``, or without that
  column one prompt, make an item). An image is a path relative to the table's folder (never
  outside it), bytes (Parquet), or a Hugging Face ``Image`` value (``{"bytes", "path"}``).
  ``item_id`` is optional (default: ``line-<n>``);
- a ``.zip`` holding either of them (a table at its top, or the folders).

Nothing is read before it is needed: memory holds one item's images at a time.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from rankloop.core.errors import InvalidInput
from rankloop.core.image_sets import ITEM_ID, MAX_IMAGE_BYTES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")
PROMPT_FILE = "prompt.txt"


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
    images: list[RawImage]


def items_of(path: Path) -> Iterator[RawItem]:
    """The items at ``path`` (a folder, a zip, or a table), by what it is."""
    if path.is_dir():
        tables = [p for p in sorted(path.iterdir()) if p.suffix in TABLE_SUFFIXES and p.is_file()]
        if len(tables) > 1:
            raise InvalidInput(
                f"{path}: one table per folder ({', '.join(t.name for t in tables)})"
            )
        if tables:
            return table_items(tables[0].suffix, tables[0].open("rb"), _Folder(path))
        return folder_items(_Folder(path))
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file or folder")
    if path.suffix == ".zip":
        return zip_items(path)
    if path.suffix in TABLE_SUFFIXES:
        return table_items(path.suffix, path.open("rb"), _Folder(path.parent))
    raise InvalidInput(f"{path}: a folder, a .zip, or a table ({', '.join(TABLE_SUFFIXES)})")


# -- where image files are: a folder, or a zip ---------------------------------------------------


class _Folder:
    """Files under one folder, none outside it (a link or ``..`` that leaves it is refused)."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def file(self, name: str, where: str) -> RawImage:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidInput(f"{where}: {name!r} is outside the folder {self.root}")
        if not path.is_file():
            raise InvalidInput(f"{where}: no image file {name!r}")
        return RawImage(where, lambda: _read_file(path, where), None)

    def items(self) -> Iterator[tuple[str, Path]]:
        for child in sorted(self.root.iterdir()):
            if child.is_dir():
                yield child.name, child


def _read_file(path: Path, where: str) -> bytes:
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise InvalidInput(f"{where}: {size} bytes, over the limit of {MAX_IMAGE_BYTES}")
    return path.read_bytes()


class _Zip:
    """Members of a zip, by their names (a name with ``..`` or a leading ``/`` is refused)."""

    def __init__(self, archive: zipfile.ZipFile, base: str = ""):
        self.archive, self.base = archive, base
        self.names = {i.filename: i for i in archive.infolist() if not i.is_dir()}

    def file(self, name: str, where: str) -> RawImage:
        member = PurePosixPath(self.base, name)
        if name.startswith("/") or ".." in PurePosixPath(name).parts:
            raise InvalidInput(f"{where}: {name!r} is outside the zip")
        info = self.names.get(str(member))
        if info is None:
            raise InvalidInput(f"{where}: no file {name!r} in the zip")

        def read() -> bytes:
            if info.file_size > MAX_IMAGE_BYTES:
                raise InvalidInput(
                    f"{where}: {info.file_size} bytes, over the limit of {MAX_IMAGE_BYTES}"
                )
            return self.archive.read(info)

        return RawImage(where, read, None)


# -- a folder tree -------------------------------------------------------------------------------


def folder_items(folder: _Folder) -> Iterator[RawItem]:
    found = False
    for line, (name, path) in enumerate(folder.items(), 1):
        found = True
        where = f"item {line} ({name})"
        prompt_file = path / PROMPT_FILE
        if not prompt_file.is_file():
            raise InvalidInput(f"{where}: no {PROMPT_FILE}")
        files = [p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        images = [
            RawImage(f"{where}: {p.name}", _reader(folder, p, f"{where}: {p.name}"), p.stem)
            for p in files
        ]
        yield RawItem(line, name, prompt_file.read_text(encoding="utf-8").strip(), images)
    if not found:
        raise InvalidInput(f"{folder.root}: no item folders (one folder per item)")


def _reader(folder: _Folder, path: Path, where: str) -> Callable[[], bytes]:
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.root):
        raise InvalidInput(f"{where}: a link to {resolved}, outside the folder {folder.root}")
    return lambda: _read_file(resolved, where)


# -- a zip ---------------------------------------------------------------------------------------


def zip_items(path: Path) -> Iterator[RawItem]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{path}: not a readable zip ({exc})") from None
    with archive:
        members = _Zip(archive)
        tables = [n for n in members.names if "/" not in n and n.endswith(TABLE_SUFFIXES)]
        if len(tables) > 1:
            raise InvalidInput(f"{path}: one table at the top of the zip ({', '.join(tables)})")
        if tables:
            with archive.open(tables[0]) as table:
                yield from table_items(PurePosixPath(tables[0]).suffix, table, members)
            return
        yield from _zip_folders(path, members)


def _zip_folders(path: Path, members: _Zip) -> Iterator[RawItem]:
    """Items as folders in the zip: ``<item>/prompt.txt`` and ``<item>/<model>.<ext>``, at the
    top or under one common folder."""
    by_item: dict[str, list[str]] = {}
    for name in sorted(members.names):
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts:
            raise InvalidInput(f"{path}: the member {name!r} is outside the zip")
        if len(parts) >= 2:
            by_item.setdefault("/".join(parts[:-1]), []).append(name)
    if not by_item:
        raise InvalidInput(f"{path}: no item folders and no table in the zip")
    for line, (folder, names) in enumerate(sorted(by_item.items()), 1):
        item_id = PurePosixPath(folder).name
        where = f"item {line} ({folder})"
        prompt = f"{folder}/{PROMPT_FILE}"
        if prompt not in names:
            raise InvalidInput(f"{where}: no {PROMPT_FILE}")
        images = [
            RawImage(f"{where}: {PurePosixPath(n).name}",
                     members.file(n, f"{where}: {PurePosixPath(n).name}").read,
                     PurePosixPath(n).stem)
            for n in names if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES
        ]  # fmt: skip
        text = members.archive.read(members.names[prompt]).decode("utf-8").strip()
        yield RawItem(line, item_id, text, images)


# -- a table -------------------------------------------------------------------------------------


def table_items(suffix: str, stream: Any, files: _Folder | _Zip) -> Iterator[RawItem]:
    """The items of a table, one row per item (``image_0``, ...) or one row per image
    (``image``), by its columns."""
    rows = _rows(suffix, stream)
    first = next(rows, None)
    if first is None:
        raise InvalidInput("the table is empty: no row")
    _, row = first
    columns = ", ".join(map(str, row)) or "none"
    if "prompt" not in row:
        raise InvalidInput(f"the table has no column 'prompt' (its columns: {columns})")
    wide = "image_0" in row
    if not wide and "image" not in row:
        raise InvalidInput(
            f"the table has no image column: 'image_0', 'image_1', ... or 'image' "
            f"(its columns: {columns})"
        )
    rows = _chain(first, rows)
    return _wide(rows, files) if wide else _long(rows, files, "item_id" in row)


def _chain(first: tuple[int, dict[str, Any]], rest: Iterator[tuple[int, dict[str, Any]]]):
    yield first
    yield from rest


def _rows(suffix: str, stream: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, row)`` of a table, streamed; the stream is closed at the end."""
    with stream:
        if suffix == ".parquet":
            yield from _parquet_rows(stream)
        elif suffix == ".csv":
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            reader = csv.DictReader(text)
            for row in reader:
                yield reader.line_num, row
        else:
            for line, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except ValueError as exc:
                    raise InvalidInput(f"line {line}: not JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise InvalidInput(f"line {line}: not a JSON object")
                yield line, row


def _parquet_rows(stream: Any) -> Iterator[tuple[int, dict[str, Any]]]:
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


def _image(value: Any, where: str, files: _Folder | _Zip, model: str | None) -> RawImage:
    """One image cell: a path, bytes, or a Hugging Face ``Image`` value."""
    if isinstance(value, dict):  # datasets' Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidInput(f"{where}: {len(data)} bytes, over the limit of {MAX_IMAGE_BYTES}")
        return RawImage(where, lambda: data, model)
    if isinstance(value, str) and value.strip():
        return RawImage(where, files.file(value.strip(), where).read, model)
    raise InvalidInput(f"{where}: no image (a path, or bytes)")


def _prompt(row: dict[str, Any], line: int) -> str:
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput(f"line {line}: an empty prompt")
    return prompt.strip()


def _item_id(row: dict[str, Any], line: int) -> str:
    value = row.get("item_id")
    if value is None or value == "":
        return f"line-{line}"
    text = str(value)
    if not ITEM_ID.match(text):
        raise InvalidInput(f"line {line}: item_id {text!r}: letters, digits, '.', '-', '_'")
    return text


def _model(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    return None if value is None or value == "" else str(value)


def _wide(rows: Iterator[tuple[int, dict[str, Any]]], files: _Folder | _Zip) -> Iterator[RawItem]:
    for line, row in rows:
        images = []
        n = 0
        while f"image_{n}" in row:
            value = row[f"image_{n}"]
            if value is not None and value != "":
                where = f"line {line}, image_{n}"
                images.append(_image(value, where, files, _model(row, f"model_{n}")))
            n += 1
        yield RawItem(line, _item_id(row, line), _prompt(row, line), images)


def _long(rows: Iterator[tuple[int, dict[str, Any]]], files: _Folder | _Zip,
          by_id: bool) -> Iterator[RawItem]:  # fmt: skip
    """Consecutive rows of one item (one ``item_id``, else one prompt) as one item."""
    current: RawItem | None = None
    current_key: str | None = None
    for line, row in rows:
        prompt = _prompt(row, line)
        key = _item_id(row, line) if by_id else prompt
        image = _image(row.get("image"), f"line {line}, image", files, _model(row, "model"))
        if current is not None and key == current_key:
            if current.prompt != prompt:
                raise InvalidInput(f"line {line}: item {key!r} has two prompts")
            current.images.append(image)
            continue
        if current is not None:
            yield current
        item_id = key if by_id else f"line-{line}"
        current, current_key = RawItem(line, item_id, prompt, [image]), key
    if current is not None:
        yield current
