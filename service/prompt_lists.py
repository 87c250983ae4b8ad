"""A study's prompt list, read from what an owner sends: plain lines, CSV, JSON Lines or Parquet
(a ``prompt`` column; optional ``negative_prompt`` and ``seed`` per row), a JSON list, or a
Hugging Face ``datasets`` folder (:mod:`service.dataset_folders`).

A datasets folder is a folder, and a prompt list comes over HTTP as one uploaded file: so it
comes as a zip of the folder (format ``hf``, or a ``.zip`` name), read from the spooled upload
member by member (no unpacking to disk, memory flat), and only its ``prompt``,
``negative_prompt`` and ``seed`` columns are read: a dataset made for something else (images,
labels) is taken as it is. One upload keeps the create one request, all or nothing, and works
from the console's form and ``curl`` alike; a folder on disk is read by :func:`read_folder`.

Every row keeps its line number (a CSV's, counting the header as line 1; a JSON Lines file's;
a Parquet file's or datasets folder's row number from 1; a JSON list's index from 1), and a bad row is refused with
it (422, ``details`` naming the line), before anything is created. Blank lines and rows with an
empty prompt are refused too: a study with a prompt missing is never what the owner meant.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

from rankloop.core.errors import InvalidInput
from rankloop.core.study_settings import MAX_STUDY_PROMPTS
from service import dataset_folders
from service.schemas import UnprocessableInput

Format = Literal["lines", "csv", "jsonl", "parquet", "hf"]
FORMATS: Final[tuple[Format, ...]] = ("lines", "csv", "jsonl", "parquet", "hf")
# A file's format from its name, when the owner names none.
SUFFIXES: Final[dict[str, Format]] = {
    ".txt": "lines",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".zip": "hf",  # a zip of a Hugging Face datasets folder
}
COLUMNS: Final = ("prompt", "negative_prompt", "seed")  # what a row may set


@dataclass(frozen=True)
class PromptRow:
    """One prompt of the list, with the per-row settings it gives, and where it was."""

    line: int
    prompt: str
    overrides: dict[str, Any]  # negative_prompt and seed, when the row gives them


class BadPromptList(UnprocessableInput):
    """A prompt list the study cannot be made from (422), naming the line when there is one."""

    code = "bad_prompt_list"

    def __init__(self, message: str, line: int | None = None):
        where = f"line {line}: " if line is not None else ""
        super().__init__(
            f"prompts: {where}{message}",
            details=[{"field": "prompts", "line": line, "message": message}],
        )


def format_of(filename: str | None, given: str | None) -> Format:
    """The format the owner named, else the one the file's name says, else plain lines."""
    if given:
        if given not in FORMATS:
            raise BadPromptList(f"format must be one of {', '.join(FORMATS)}, got {given[:20]!r}")
        return given  # type: ignore[return-value]
    name = (filename or "").lower()
    return next((fmt for suffix, fmt in SUFFIXES.items() if name.endswith(suffix)), "lines")


def read_upload(stream: IO[bytes], fmt: Format) -> list[PromptRow]:
    """The rows of an uploaded prompt list; a zip (``hf``) is read from ``stream`` as it lies
    (seekable: Werkzeug spools a large upload to disk), the rest from its bytes."""
    if fmt == "hf":
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError) as error:
            raise BadPromptList(f"not a zip of a datasets folder ({error})") from None
        with archive:
            folder = dataset_folders.in_zip(archive)
            if folder is None:
                raise BadPromptList(
                    "the zip holds no datasets folder (state.json or dataset_dict.json, "
                    "as save_to_disk writes it)"
                )
            return _dataset_rows(folder)
    return read_file(stream.read(), fmt)


def read_folder(path: Path) -> list[PromptRow]:
    """The rows of a Hugging Face datasets folder on disk."""
    folder = dataset_folders.on_disk(path)
    if folder is None:
        raise BadPromptList(f"{path} is not a datasets folder (no state.json or dataset_dict.json)")
    return _dataset_rows(folder)


def _dataset_rows(folder: dataset_folders.DatasetFolder) -> list[PromptRow]:
    try:
        if "prompt" not in dataset_folders.columns(folder):
            raise BadPromptList("the dataset has no 'prompt' column")
        rows = dataset_folders.rows(folder, COLUMNS)
        return _checked(_row(n, record) for n, record in rows)
    except BadPromptList:
        raise
    except InvalidInput as error:  # the folder's own problems: a file missing, not Arrow
        raise BadPromptList(str(error)) from None


def read_file(data: bytes, fmt: Format) -> list[PromptRow]:
    """The rows of an uploaded prompt list (any format but ``hf``: :func:`read_upload`)."""
    if fmt == "hf":
        return read_upload(io.BytesIO(data), fmt)
    if fmt == "parquet":
        return _checked(_parquet_rows(data))
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise BadPromptList("the file holds a NUL byte (is it a text file?)", line)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BadPromptList("the file is not UTF-8 text", line) from None
    reader = {"lines": _lines, "csv": _csv_rows, "jsonl": _jsonl_rows}[fmt]
    return _checked(reader(text))


def read_json(prompts: Any) -> list[PromptRow]:
    """The rows of a JSON body's ``prompts``: a string of lines, or a list whose items are
    prompts or objects with a ``prompt``."""
    if isinstance(prompts, str):
        return _checked(_lines(prompts))
    if not isinstance(prompts, list):
        raise BadPromptList("a list of prompts, or one string of lines")
    return _checked(
        _row(n, item if isinstance(item, dict) else {"prompt": item})
        for n, item in enumerate(prompts, 1)
    )


def _checked(rows: Iterable[PromptRow]) -> list[PromptRow]:
    out: list[PromptRow] = []
    for row in rows:
        if len(out) >= MAX_STUDY_PROMPTS:
            raise BadPromptList(f"more than {MAX_STUDY_PROMPTS} prompts", row.line)
        out.append(row)
    if not out:
        raise BadPromptList("the list holds no prompt")
    return out


def _row(line: int, record: Any) -> PromptRow:
    if not isinstance(record, dict):
        raise BadPromptList("a row must be an object with a prompt", line)
    unknown = sorted(set(record) - set(COLUMNS))
    if unknown:
        raise BadPromptList(f"unknown column {unknown[0]!r} (a row may set {COLUMNS})", line)
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadPromptList("no prompt", line)
    if "\x00" in prompt:
        raise BadPromptList("the prompt holds a NUL byte", line)
    overrides: dict[str, Any] = {}
    negative = record.get("negative_prompt")
    if negative not in (None, ""):
        if not isinstance(negative, str):
            raise BadPromptList("negative_prompt must be text", line)
        overrides["negative_prompt"] = negative
    seed = record.get("seed")
    if seed not in (None, ""):
        overrides["seed"] = _seed(seed, line)
    return PromptRow(line, prompt.strip(), overrides)


def _seed(value: Any, line: int) -> int:
    if isinstance(value, bool):
        raise BadPromptList("seed must be a whole number", line)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    raise BadPromptList(f"seed must be a whole number, got {str(value)[:20]!r}", line)


def _lines(text: str) -> Iterator[PromptRow]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a file's trailing newlines are no prompts
    for n, line in enumerate(lines, 1):
        yield _row(n, {"prompt": line})


def _csv_rows(text: str) -> Iterator[PromptRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\x00extra")
    try:
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise BadPromptList("the header has no 'prompt' column", 1)
        for record in reader:
            line = reader.line_num
            if "\x00extra" in record:
                raise BadPromptList("more fields than the header names", line)
            if not any((value or "").strip() for value in record.values()):
                continue  # a blank line between rows
            yield _row(line, {k: v for k, v in record.items() if k in COLUMNS or v})
    except csv.Error as error:
        raise BadPromptList(f"not CSV: {error}", reader.line_num) from None


def _jsonl_rows(text: str) -> Iterator[PromptRow]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise BadPromptList(f"not JSON: {error}", n) from None
        yield _row(n, record)


def _parquet_rows(data: bytes) -> Iterator[PromptRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # an optional dependency (the "export" extra)
        raise BadPromptList(
            "Parquet needs pyarrow on the coordinator: send CSV or JSON Lines"
        ) from None
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as error:  # pyarrow's own errors: a file it cannot read
        raise BadPromptList(f"not a Parquet file: {str(error)[:200]}") from None
    if "prompt" not in table.column_names:
        raise BadPromptList("the file has no 'prompt' column")
    if table.num_rows > MAX_STUDY_PROMPTS:
        raise BadPromptList(f"more than {MAX_STUDY_PROMPTS} prompts", MAX_STUDY_PROMPTS + 1)
    for n, record in enumerate(table.to_pylist(), 1):
        yield _row(n, record)


__all__ = [
    "FORMATS",
    "BadPromptList",
    "Format",
    "PromptRow",
    "format_of",
    "read_file",
    "read_folder",
    "read_json",
    "read_upload",
]
