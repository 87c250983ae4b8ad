"""The rows of a Hugging Face ``datasets`` folder (the ``save_to_disk`` layout), read with pyarrow
alone, so the coordinator need not import ``datasets``. One reader for both of its uses: an
image set's items (:mod:`service.image_sets.reading`) and a study's prompt list
(:mod:`service.prompt_lists`).

The layout, as ``datasets`` writes it: ``state.json`` (its ``_data_files``: the ``.arrow``
files, in order), ``dataset_info.json`` (its ``features``) and the ``.arrow`` files, each an
Arrow IPC *stream*; or, for a ``DatasetDict``, ``dataset_dict.json`` (its ``splits``) and one such
folder per split. The folder is on disk, or in a zip (at its top, or under one folder: a zip of
the folder). Rows are numbered from 1 across the splits, in the order ``dataset_dict.json`` lists
them, and read one record batch at a time (a file on disk is memory-mapped, a zip member
streamed), one row at a time into Python: memory stays flat however many rows there are. An
``Image`` feature's value is the struct ``{"bytes", "path"}`` it is stored as.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from rankloop.core.errors import InvalidInput

STATE = "state.json"
DICT = "dataset_dict.json"
INFO = "dataset_info.json"
MAX_JSON_BYTES = 1 << 20  # a state or info file is small; a larger one is not datasets'


@dataclass(frozen=True)
class DatasetFolder:
    """Where a ``save_to_disk`` folder is: ``root`` on disk, or ``prefix`` in ``archive``."""

    root: Path | None = None
    archive: zipfile.ZipFile | None = None
    prefix: str = ""  # in a zip: the folder's members start with it ("" or "name/")

    def name(self, relative: str) -> str:
        return f"{self.prefix}{relative}"

    def has(self, relative: str) -> bool:
        if self.root is not None:
            return (self.root / relative).is_file()
        assert self.archive is not None
        return self.name(relative) in self.archive.NameToInfo

    def json(self, relative: str) -> Any:
        if not self.has(relative):
            raise InvalidInput(f"the dataset folder has no {relative}")
        if self.root is not None:
            path = self.root / relative
            if path.stat().st_size > MAX_JSON_BYTES:
                raise InvalidInput(
                    f"{relative}: too large for a datasets {PurePosixPath(relative).name}"
                )
            raw = path.read_bytes()
        else:
            assert self.archive is not None
            info = self.archive.getinfo(self.name(relative))
            if info.file_size > MAX_JSON_BYTES:
                raise InvalidInput(
                    f"{relative}: too large for a datasets {PurePosixPath(relative).name}"
                )
            raw = self.archive.read(info)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise InvalidInput(f"{relative}: not JSON ({exc})") from None

    def open(self, relative: str) -> Any:
        """A pyarrow source for the file: memory-mapped on disk, streamed from a zip."""
        import pyarrow as pa

        if not self.has(relative):
            raise InvalidInput(f"the dataset folder has no {relative} (state.json lists it)")
        if self.root is not None:
            return pa.memory_map(str(self.root / relative))
        assert self.archive is not None
        return self.archive.open(self.name(relative))


def on_disk(path: Path) -> DatasetFolder | None:
    """The datasets folder at ``path``, or None when it is not one."""
    if (path / STATE).is_file() or (path / DICT).is_file():
        return DatasetFolder(root=path.resolve())
    return None


def in_zip(archive: zipfile.ZipFile) -> DatasetFolder | None:
    """The datasets folder in ``archive`` (at its top, or under one folder), or None."""
    for prefix in ("", *_top_folders(archive)):
        if f"{prefix}{STATE}" in archive.NameToInfo or f"{prefix}{DICT}" in archive.NameToInfo:
            return DatasetFolder(archive=archive, prefix=prefix)
    return None


def _top_folders(archive: zipfile.ZipFile) -> list[str]:
    tops = {name.split("/", 1)[0] for name in archive.NameToInfo if "/" in name}
    return [f"{top}/" for top in sorted(tops)] if len(tops) == 1 else []


def splits(folder: DatasetFolder) -> list[str]:
    """The folder's splits, each as the sub-folder prefix its files have ("" for a Dataset)."""
    if not folder.has(DICT):
        return [""]
    listed = folder.json(DICT)
    names = listed.get("splits") if isinstance(listed, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidInput(f"{DICT}: no 'splits' list")
    for split in names:
        if not split or "/" in split or split.startswith("."):
            raise InvalidInput(f"{DICT}: a split named {split[:40]!r}")
    return [f"{split}/" for split in names]


def columns(folder: DatasetFolder) -> list[str]:
    """The columns of the folder's first split, as its Arrow schema names them."""
    split = splits(folder)[0]
    files = _data_files(folder, split)
    if not files:
        return []
    import pyarrow as pa

    try:
        with folder.open(files[0]) as source, pa.ipc.open_stream(source) as reader:
            return list(reader.schema.names)
    except pa.ArrowException as exc:
        raise InvalidInput(f"{files[0]}: not an Arrow stream ({exc})") from None


def _data_files(folder: DatasetFolder, split: str) -> list[str]:
    state = folder.json(f"{split}{STATE}")
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list):
        raise InvalidInput(f"{split}{STATE}: no '_data_files' list")
    names = []
    for entry in files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise InvalidInput(f"{split}{STATE}: a data file named {str(name)[:60]!r}")
        names.append(f"{split}{name}")
    return names


def rows(folder: DatasetFolder, wanted: Sequence[str] | None = None) -> Iterator[tuple[int, dict]]:
    """``(row, record)`` of every split in turn, rows numbered from 1; ``wanted``: only these
    columns (those the folder has), so the rest (images, in a prompt list) are never decoded."""
    import pyarrow as pa

    row = 0
    for split in splits(folder):
        for name in _data_files(folder, split):
            try:
                with folder.open(name) as source, pa.ipc.open_stream(source) as reader:
                    keep = None
                    if wanted is not None:
                        keep = [c for c in wanted if c in reader.schema.names]
                    for batch in reader:
                        if keep is not None:
                            batch = batch.select(keep)
                        for i in range(batch.num_rows):
                            row += 1
                            # One row into Python at a time: a batch may hold megabytes.
                            yield row, batch.slice(i, 1).to_pylist()[0]
            except pa.ArrowException as exc:
                where = f"row {row + 1}" if row else name
                raise InvalidInput(
                    f"{where}: {name} is not a readable Arrow stream ({exc})"
                ) from None


__all__ = ["DatasetFolder", "columns", "in_zip", "on_disk", "rows", "splits"]
