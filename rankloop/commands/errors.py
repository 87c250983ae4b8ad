"""What a command says when it fails: one line naming what is wrong and what to do.

Usage errors (a bad argument or option) exit with status 2, as click's own do; every other
failure exits with 1. ``rankloop --debug ...`` lets the exception through with its traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from rankloop.core.errors import RankloopError

# A campaign id names files (report-<id>.png) and object-store keys: nothing that walks a path.
CAMPAIGN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEBUG_HINT = "run `rankloop --debug ...` for the traceback"


class CampaignId(click.ParamType):
    """A campaign id as the coordinator makes them: letters, digits, ``-`` and ``_``."""

    name = "campaign_id"

    def convert(self, value, param, ctx) -> str:
        if not isinstance(value, str) or not CAMPAIGN_ID.fullmatch(value):
            self.fail(f"{value!r} is not a campaign id (letters, digits, - and _)", param, ctx)
        return value


def explain(exc: BaseException) -> str:
    """One line for ``exc``: what went wrong, and what to do where we can tell."""
    if isinstance(exc, RankloopError):
        return str(exc)
    text = _first_line(exc)
    name = type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    if module == "sqlalchemy":
        from service.db import NO_TABLES, missing_tables, upgrade_hint  # not on --help's path

        if missing_tables(exc):
            return f"{NO_TABLES}: {upgrade_hint()}"
        if name in ("OperationalError", "InterfaceError"):
            return f"cannot use the database: {text} (is it running, and is the URL right?)"
        if name == "ArgumentError":
            return f"not a database URL: {text}"
    if module == "pyarrow":
        return f"not a readable Parquet file: {text}"
    if isinstance(exc, OSError) and exc.strerror:  # a file, a port, a disk
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, ValueError | LookupError | TypeError) and module == "builtins":
        return f"{text} ({DEBUG_HINT})"
    return f"unexpected {name}: {text} ({DEBUG_HINT})"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` only when the block succeeds:
    a failed command leaves no half-written file behind (and an older file as it was)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The suffix stays last: writers that pick a format by it (Pillow) still see ".png".
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
