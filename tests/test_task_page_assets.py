"""The task page's assets: every module of task.js's import graph is preloaded by task.html (a
module found only when its importer has arrived costs a round trip per level of imports), and
early.js comes inline, allowed by its hash in the page's Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

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


class _InlineScripts(HTMLParser):
    """The text of every script element without a ``src``."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._inline = False

    def handle_starttag(self, tag, attrs):
        self._inline = tag == "script" and "src" not in dict(attrs)
        if self._inline:
            self.texts.append("")

    def handle_data(self, data):
        if self._inline:
            self.texts[-1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._inline = False


# The plain page, and the page as MTurk's ExternalQuestion frames it (its own frame-ancestors).
@pytest.mark.parametrize(
    "query", ["", "?assignmentId=A1&hitId=H1&workerId=W1&turkSubmitTo=https://www.mturk.com"]
)
def test_the_task_page_inlines_early_js_and_its_csp_allows_that_script_alone(tmp_path, query):
    from service import db
    from tests.fixtures.coordinator import make_app

    app = make_app(tmp_path)
    response = app.test_client().get(f"/task{query}")
    db.get_engine(app).dispose()
    scripts = _InlineScripts()
    scripts.feed(response.get_data(as_text=True))
    # The one inline script is early.js, byte for byte (its file stays the source).
    assert scripts.texts == [(UI / "static" / "js" / "early.js").read_text(encoding="utf-8")]
    digest = base64.b64encode(hashlib.sha256(scripts.texts[0].encode()).digest()).decode()
    csp = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"].split() == ["'self'", f"'sha256-{digest}'"]
    assert "unsafe-inline" not in csp
