"""An MTurk HIT (ExternalQuestion) in headless Chromium: an MTurk stand-in frames ``/join``, the
worker ranks inside the frame, and the finished assignment is posted back to the stand-in's
``/mturk/externalSubmit``, as MTurk expects it; no other site may frame the pages.

The stand-in is a local HTTP server (``http://localhost:<port>``), allowed by the test-only
``MTURK_TEST_ORIGIN`` (honoured only with ``TESTING``; production allows MTurk's origins alone,
tests/test_mturk.py). A real server, not a browser route: Chromium lets no public site (which a
routed ``https://workersandbox.mturk.com`` would be) frame a loopback address.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from werkzeug.serving import make_server

from rankloop.core import mturk
from tests.fixtures.coordinator import Owner, make_app
from tests.test_ui_failure_paths import WAIT_MS, Server
from tests.test_ui_task_page import axe_violations

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@dataclass
class StandIn:
    """A site that frames ``/hit?src=<url>`` and records what is posted to it."""

    origin: str
    posted: list[dict[str, list[str]]] = field(default_factory=list)

    def hit(self, src: str) -> str:
        return f"{self.origin}/hit?src={quote(src, safe='')}"


def serve_stand_in() -> tuple[StandIn, ThreadingHTTPServer]:
    site: StandIn

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: str) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            src = parse_qs(urlsplit(self.path).query).get("src", [""])[0]
            self._answer(
                f'<!doctype html><html lang="en"><title>HIT</title><iframe src="{src}" width="1200" height="800">'
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path == mturk.SUBMIT_PATH:
                site.posted.append(parse_qs(self.rfile.read(length).decode()))
            self._answer("<h1>HIT submitted</h1>")

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("localhost", 0), Handler)
    site = StandIn(f"http://localhost:{http.server_port}")
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return site, http


@pytest.fixture
def sites(tmp_path) -> Iterator[tuple[Server, StandIn, StandIn]]:
    """The coordinator over HTTP, the MTurk stand-in it allows, and a site it does not."""
    from service import db

    (turk, turk_http), (other, other_http) = serve_stand_in(), serve_stand_in()
    app = make_app(tmp_path, MTURK_TEST_ORIGIN=turk.origin)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield (
            Server(f"http://127.0.0.1:{http.server_port}", app, Owner(app.test_client())),
            turk,
            other,
        )
    finally:
        http.shutdown()
        turk_http.shutdown()
        other_http.shutdown()
        db.get_engine(app).dispose()


def framed(page, base_url: str) -> Any:
    """The frame showing the coordinator's page once loaded; None when the browser refused it
    (the frame then shows Chromium's error page)."""
    for _ in range(400):
        loaded = [f for f in page.frames[1:] if f.url not in ("", "about:blank")]
        if any(f.url.startswith("chrome-error:") for f in loaded):
            return None
        shown = [f for f in loaded if f.url.startswith(base_url) and "/join/" not in f.url]
        if shown:
            return shown[0]
        page.wait_for_timeout(50)
    return None


def test_an_mturk_worker_ranks_in_the_hit_frame_and_the_assignment_goes_back(sites, browser):
    server, turk, _other = sites
    campaign = server.open_round(name="HIT", prompt="a turkish fig", recruit=True,
                                 tasks_per_annotator=1, completion_code="FIG42")  # fmt: skip
    join = (
        f"{server.base_url}/join/{campaign['id']}?assignmentId=A%2B1&hitId=H1&workerId=W1"
        f"&turkSubmitTo={quote(turk.origin + '/')}"
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(turk.hit(join))
        frame = framed(page, server.base_url)
        assert frame is not None, [f.url for f in page.frames]
        frame.wait_for_selector("#task:not([hidden]) .tile", timeout=WAIT_MS)
        assert "#" not in frame.url  # the token and the assignment left the address
        # Hold the page's own timed submit, to look at the form (and run axe) first.
        frame.evaluate(
            "() => { HTMLFormElement.prototype.requestSubmit = function () { window.__held = this; }; }"
        )
        for tile in range(frame.locator(".tile-pick").count()):
            frame.locator(".tile-pick").nth(tile).click()
        frame.click("#submit")
        frame.wait_for_function("() => window.__held instanceof HTMLFormElement", timeout=WAIT_MS)
        form = frame.evaluate(
            "() => ({action: __held.action, method: __held.method,"
            " fields: [...new FormData(__held)].map(([n, v]) => [n, v])})"
        )
        assert form == {
            "action": f"{turk.origin}/mturk/externalSubmit",
            "method": "post",
            "fields": [["assignmentId", "A+1"], ["completion_code", "FIG42"]],
        }
        assert frame.text_content("#status-title") == "All done. Thank you!"
        assert frame.text_content("#completion-code") == "FIG42"
        assert axe_violations(frame) == []
        frame.click("#mturk-form button[type=submit]")  # the worker's own press, as a fallback
        frame.wait_for_selector("text=HIT submitted", timeout=WAIT_MS)
        assert turk.posted == [{"assignmentId": ["A+1"], "completion_code": ["FIG42"]}]
        assert errors == []
    finally:
        context.close()
    (worker,) = server.owner.get(f"/api/campaigns/{campaign['id']}/annotators").json["annotators"]
    detail = server.owner.get(f"/api/campaigns/{campaign['id']}/annotators/{worker['id']}").json
    assert detail["participant_context"]["turk_submit_to"] == turk.origin


def test_no_other_site_frames_the_pages_and_mturk_frames_no_other_page(sites, browser):
    server, turk, other = sites
    campaign = server.open_round(recruit=True)
    join = f"{server.base_url}/join/{campaign['id']}?workerId=W2&assignmentId=A2"
    # Who frames what: refused twice, then the control (the stand-in frames the join link).
    cases = [other.hit(join), turk.hit(f"{server.base_url}/dashboard"), turk.hit(join)]
    context = browser.new_context()
    try:
        shown = []
        for url in cases:
            page = context.new_page()
            page.goto(url)
            frame = framed(page, server.base_url)
            shown.append(frame is not None and frame.locator("h1").count() > 0)
            page.close()
        assert shown == [False, False, True]
    finally:
        context.close()
