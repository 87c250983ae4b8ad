"""The task page's assets: every module of task.js's import graph is preloaded by task.html (a
module found only when its importer has arrived costs a round trip per level of imports)."""

from __future__ import annotations

import re
from pathlib import Path

UI = Path(__file__).resolve().parents[1] / "annotator_ui"
IMPORT = re.compile(r"""^\s*(?:import|export)\b[^;]*?\bfrom\s+["']\./([\w-]+\.js)["']""", re.M)


def imported(module: str, seen: set[str] | None = None) -> set[str]:
    """Every module ``module`` imports, directly or not (static imports only)."""
    seen = set() if seen is None else seen
    for name in IMPORT.findall((UI / "static" / "js" / module).read_text()):
        if name not in seen:
            seen.add(name)
            imported(name, seen)
    return seen


def test_the_task_page_preloads_every_module_it_imports(tmp_path):
    from service import db
    from tests.fixtures.coordinator import make_app

    app = make_app(tmp_path)
    page = app.test_client().get("/task").get_data(as_text=True)
    db.get_engine(app).dispose()
    preloaded = set(re.findall(r'rel="modulepreload" href="[^"]*/js/([\w-]+\.js)"', page))
    assert preloaded == imported("task.js")
