"""``rankloop report`` as HTML: one self-contained page (every image a data: URI, nothing
fetched), the verdict, curve, agreement with intervals, reliability as the console shows it,
the best image of every round; and looked at in headless Chromium (a screenshot under
test-output/screenshots/)."""

from __future__ import annotations

import html
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from rankloop.commands.report import report_command
from rankloop.core.settings import settings_of
from rankloop.core.storage import round_prefix
from service import db
from service.api.common import reliability_weights
from service.models import Campaign
from tests.test_exports import QUORUM, ROUNDS, campaign  # noqa: F401 (the fixture)


class Page(HTMLParser):
    """What a page would fetch or link to, its sections and its table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.sources: list[tuple[str, str, str]] = []  # tag, attribute, value
        self.sections: list[str] = []
        self.cells: list[str] = []
        self._cell = False

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        for name in ("src", "href", "data", "poster", "srcset", "action"):
            if found.get(name):
                self.sources.append((tag, name, found[name] or ""))
        if tag == "img":
            self.images.append(found.get("src") or "")
        if tag == "section":
            self.sections.append(found.get("id") or "")
        self._cell = tag in ("td", "th")
        if self._cell:
            self.cells.append("")

    def handle_endtag(self, tag):
        self._cell = False

    def handle_data(self, data):
        if self._cell:
            self.cells[-1] += data


def _report(app: Flask, target: str, out: Path) -> Path:
    settings = settings_of(app)
    result = CliRunner().invoke(
        report_command,
        [target, "--out", str(out), "--url", settings.database_url, "--store", settings.store_url],
    )
    assert result.exit_code == 0, result.output
    return out


def _parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _self_contained(page: Page) -> None:
    for tag, attribute, value in page.sources:
        # Only a plain link (<a href>) may point outside; nothing is loaded from anywhere.
        if tag != "a":
            assert value.startswith("data:"), (tag, attribute, value[:80])
    assert page.images and all(src.startswith("data:image/") for src in page.images)


@pytest.fixture
def written(app: Flask, campaign: str, tmp_path: Path) -> Path:  # noqa: F811
    return _report(app, campaign, tmp_path) / f"report-{campaign}.html"


def test_the_html_report_is_self_contained_and_says_everything(app, campaign, written):  # noqa: F811
    page = _parse(written)
    _self_contained(page)
    assert page.sections[:2] == ["verdict", "figure"]  # the verdict leads
    for section in ("improvement", "agreement", "annotators", "strip", "settings", "versions"):
        assert section in page.sections
    # The figure and the best image of every round (the strip), all embedded.
    assert len(page.images) == 1 + ROUNDS
    text = html.unescape(written.read_text(encoding="utf-8"))
    assert "no verdict yet" in text and "Kendall's W" in text and "Krippendorff's α" in text
    assert (written.parent / f"report-{campaign}.png").exists()
    assert (written.parent / f"report-{campaign}.pdf").exists()
    # Reliability is the console's number, each annotator's one.
    with db.session_scope(app) as session:
        weights = reliability_weights(session.get(Campaign, campaign))
    assert len(weights) == QUORUM
    for annotator, weight in weights.items():
        at = page.cells.index(annotator)
        assert page.cells[at + 4] == f"{weight:.3f}"
    assert "rankloop" in page.cells and "python" in page.cells  # the software's versions


@pytest.mark.browser
def test_the_html_report_opens_offline_in_chromium(browser, screenshot_dir, campaign, written):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    fetched: list[str] = []
    context.on("request", lambda request: fetched.append(request.url))
    page = context.new_page()
    try:
        page.goto(written.as_uri())
        page.wait_for_selector("#verdict .lead")
        loaded = page.eval_on_selector_all(
            "img", "images => images.map(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded and all(loaded)
        page.screenshot(path=screenshot_dir / "report-campaign.png", full_page=True)
    finally:
        context.close()
    assert [u for u in fetched if not u.startswith(("file:", "data:"))] == []


def test_export_writes_the_campaigns_images_in_one_zip(app, campaign, tmp_path):  # noqa: F811
    from rankloop.commands.export import export_command

    settings = settings_of(app)
    path = tmp_path / "images.zip"
    args = [campaign, "--images-zip", str(path), "--url", settings.database_url,
            "--store", settings.store_url]  # fmt: skip
    result = CliRunner().invoke(export_command, args)
    assert result.exit_code == 0, result.output
    store = app.extensions["rankloop_store"]
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [f"round-{n:04d}.png" for n in range(ROUNDS)]
        for number in range(ROUNDS):
            key = f"{round_prefix(campaign, number)}/best.png"
            assert archive.read(f"round-{number:04d}.png") == store.get(key)
    refused = CliRunner().invoke(export_command, [*args, "--table", "pairs"])
    assert refused.exit_code == 2 and "one campaign's images" in refused.output
