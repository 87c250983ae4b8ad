"""The items of an image set, read one at a time from where the owner keeps them, each named by
the line (a table's row, or the item's place in a folder tree) a problem would be reported on.

Sources:

- a folder tree: one folder per item (its name is the item id) holding ``prompt.txt`` and the
  item's images (``.png``, ``.jpg``, ``.jpeg``, ``.webp``; each file's stem is its model);
- a table, ``.csv``, ``.jsonl`` or ``.parquet`` (:mod:`service.image_sets.tables`), or a
  Hugging Face ``datasets`` folder (``save_to_disk``; :mod:`service.dataset_folders`), with a
  ``prompt`` column and either
  ``image_0``, ``image_1``, ... (one row per item; ``model_0``, ... optional) or ``image`` (one
  row per image; ``model`` optional; consecutive rows with one ``item_id``, or without that
  column one prompt, make an item). An image is a path relative to the table's folder (never
  outside it), bytes (Parquet), or a Hugging Face ``Image`` value (``{"bytes", "path"}``).
  ``item_id`` is optional (default: ``line-<n>``);
- a ``.zip`` holding any of them (a table at its top, a datasets folder, or the item folders).

Nothing is read before it is needed: memory holds one item's images at a time. A problem with
the whole source raises :class:`InvalidInput`; a problem with one item comes as that item's
``error`` (:mod:`service.image_sets.items`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from rankloop.core.errors import InvalidInput
from rankloop.core.image_sets import MAX_IMAGE_BYTES
from service import dataset_folders
from service.image_sets.items import RawImage, RawItem
from service.image_sets.tables import file_rows, table_items

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")
PROMPT_FILE = "prompt.txt"


def items_of(path: Path) -> Iterator[RawItem]:
    """The items at ``path`` (a folder, a zip, or a table), by what it is."""
    if path.is_dir():
        found = dataset_folders.on_disk(path)
        if found is not None:
            return table_items(dataset_folders.rows(found), _Folder(path))
        tables = [p for p in sorted(path.iterdir()) if p.suffix in TABLE_SUFFIXES and p.is_file()]
        if len(tables) > 1:
            raise InvalidInput(
                f"{path}: one table per folder ({', '.join(t.name for t in tables)})"
            )
        if tables:
            return table_items(file_rows(tables[0].suffix, tables[0].open("rb")), _Folder(path))
        return folder_items(_Folder(path))
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file or folder")
    if path.suffix == ".zip":
        return zip_items(path)
    if path.suffix in TABLE_SUFFIXES:
        return table_items(file_rows(path.suffix, path.open("rb")), _Folder(path.parent))
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
        try:
            prompt_file = path / PROMPT_FILE
            if not prompt_file.is_file():
                raise InvalidInput(f"{where}: no {PROMPT_FILE}")
            files = [p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
            images = [
                RawImage(f"{where}: {p.name}", _reader(folder, p, f"{where}: {p.name}"), p.stem)
                for p in files
            ]
            item = RawItem(line, name, _text(prompt_file.read_bytes(), where), images)
        except InvalidInput as exc:
            item = RawItem.bad(line, str(exc), name)
        yield item
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
        found = dataset_folders.in_zip(archive)
        if found is not None:
            yield from table_items(dataset_folders.rows(found), _Zip(archive, found.prefix))
            return
        tables = [n for n in members.names if "/" not in n and n.endswith(TABLE_SUFFIXES)]
        if len(tables) > 1:
            raise InvalidInput(f"{path}: one table at the top of the zip ({', '.join(tables)})")
        if tables:
            rows = file_rows(PurePosixPath(tables[0]).suffix, archive.open(tables[0]))
            yield from table_items(rows, members)
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
            yield RawItem.bad(line, f"{where}: no {PROMPT_FILE}", item_id)
            continue
        images = [
            RawImage(f"{where}: {PurePosixPath(n).name}",
                     members.file(n, f"{where}: {PurePosixPath(n).name}").read,
                     PurePosixPath(n).stem)
            for n in names if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES
        ]  # fmt: skip
        try:
            text = _text(members.archive.read(members.names[prompt]), where)
        except InvalidInput as exc:
            yield RawItem.bad(line, str(exc), item_id)
            continue
        yield RawItem(line, item_id, text, images)


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: {PROMPT_FILE} is not UTF-8 text") from None


__all__ = ["RawImage", "RawItem", "items_of"]
