"""Shared output of every benchmark: one aligned text table and one JSON file."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Render ``rows`` (dicts) as a plain aligned table; floats get 4 significant digits."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    table = [[str(c) for c in columns]] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_results(path: str | Path, name: str, rows: Sequence[dict[str, Any]], **meta: Any) -> Path:
    """Write ``{"benchmark", "when", "machine", "meta", "rows"}`` as JSON and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "when": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "meta": meta,
        "rows": list(rows),
    }
    path.write_text(json.dumps(document, indent=2, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays appear in rows; convert without importing numpy here.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
