"""Live pages in headless Chromium (server-sent events, service/api/stream.py; live.js): the
campaign page follows a round closing and the next opening from its stream, and polls when the
stream is refused; a waiting annotator's page shows the task when a round opens; both through
the web tier's own streams and through the stream process on another port (service/push).

To show that the stream, not the page's polling, brought a change, the page's clock is paused
(Playwright's clock: timers do not fire) once the stream is live: only an event can then make
the page fetch anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rankloop.core.settings import settings_of
from tests import test_ui_failure_paths as failure_paths
from tests.fixtures.coordinator import render_round
from tests.test_ui_console import annotators, desktop_tab, rank, sign_in
from tests.test_ui_failure_paths import WAIT_MS

server = failure_paths.server  # the coordinator over HTTP

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def tab(browser) -> Iterator[tuple[Any, list[str]]]:
    with desktop_tab(browser) as (page, errors):
        page.clock.install()  # runs as usual until paused
        yield page, errors


def pause_timers(page) -> None:
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)


@pytest.fixture
def stream_process(server) -> Iterator[Any]:
    """The stream process on another port, told by notifications only (its sweep an hour
    apart); the tickets name it (RANKLOOP_STREAM_URL), so the pages open their streams there."""
    from service.push.server import Background

    streams = Background(settings_of(server.app).model_copy(update={"push_sweep_s": 3600.0}))
    settings_of(server.app).stream_url = f"http://127.0.0.1:{streams.port}"
    yield streams
    streams.stop()


VIA = ["web tier", "stream process"]  # whose streams the pages open


@pytest.mark.parametrize("via", VIA)
def test_the_campaign_page_follows_its_stream(server, tab, request, via):
    page, errors = tab
    streamed: list[str] = []  # the page's stream requests
    page.on("request", lambda r: "/stream?" in r.url and streamed.append(r.url))
    origin = server.base_url
    if via == "stream process":  # another origin: CORS, and the page's CSP allows it
        origin = f"http://127.0.0.1:{request.getfixturevalue('stream_process').port}"
    cid = server.open_round(annotators_per_round=1, rounds=3, tasks_per_annotator=5)["id"]
    ((_, token),) = annotators(server, cid, 1)
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("body[data-live=stream]", timeout=WAIT_MS)
    page.wait_for_selector("#strip figure.current img", timeout=WAIT_MS)
    assert page.text_content("#refreshed").startswith("Live")
    pause_timers(page)
    # With timers paused, only an event makes the page fetch the campaign again.
    campaign_url = f"{server.base_url}/api/campaigns/{cid}"
    with page.expect_request(lambda request: request.url == campaign_url, timeout=WAIT_MS):
        rank(server, token)  # round 0 closes, round 1 renders and opens
        render_round(server.app, cid, 1)
    page.wait_for_selector("#strip figure[data-round='0'] img", timeout=WAIT_MS)
    page.wait_for_function(
        "() => document.querySelector('#round-pick').options.length === 2", timeout=WAIT_MS
    )
    # The strip shows thumbnails; each links to its image full size.
    winner = page.locator("#strip figure[data-round='0']")
    assert "/thumbs/" in winner.locator("img").get_attribute("src")
    assert "/images/" in winner.locator("a").get_attribute("href")
    assert "/thumbs/" in page.get_attribute("#strip figure.current img", "src")
    assert page.get_attribute("body", "data-live") == "stream"
    assert streamed and all(url.startswith(f"{origin}/api/") for url in streamed)
    assert errors == []


def test_the_campaign_page_polls_when_streams_are_refused(server, tab):
    page, errors = tab
    page.route("**/stream?*", lambda route: route.fulfill(status=503, body="busy"))
    cid = server.open_round(annotators_per_round=1, rounds=3, tasks_per_annotator=5)["id"]
    ((_, token),) = annotators(server, cid, 1)
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("#strip figure.current img", timeout=WAIT_MS)
    page.wait_for_selector("body[data-live=polling]", state="attached", timeout=WAIT_MS)
    rank(server, token)
    render_round(server.app, cid, 1)
    page.wait_for_selector("#strip figure[data-round='0'] img", timeout=WAIT_MS)
    assert page.get_attribute("body", "data-live") == "polling"
    assert not page.text_content("#refreshed").startswith("Live")
    assert errors == []


@pytest.mark.parametrize("via", VIA)
def test_a_waiting_annotator_gets_the_task_when_the_round_opens(server, tab, request, via):
    page, errors = tab
    streamed: list[str] = []  # the waiting page's stream requests
    page.on("request", lambda r: "/tasks/stream?" in r.url and streamed.append(r.url))
    origin = server.base_url
    if via == "stream process":
        origin = f"http://127.0.0.1:{request.getfixturevalue('stream_process').port}"
    campaign = server.owner.campaign(m=4, annotators_per_round=1, rounds=3, start=True)
    ((_, token),) = annotators(server, campaign["id"], 1)
    page.goto(f"{server.base_url}/task#token={token}")
    page.wait_for_selector("#status[data-kind=rendering]", timeout=WAIT_MS)
    page.wait_for_selector("body[data-live=stream]", state="attached", timeout=WAIT_MS)
    pause_timers(page)
    render_round(server.app, campaign["id"], 0)
    page.wait_for_selector("#task:not([hidden]) .tile", timeout=WAIT_MS)
    assert streamed and all(url.startswith(f"{origin}/api/") for url in streamed)
    assert errors == []


def test_the_page_opens_a_new_stream_when_one_ends(server, tab):
    page, errors = tab
    settings_of(server.app).stream_lifetime_s = 1  # each stream ends after about a second
    cid = server.open_round(annotators_per_round=1, rounds=3, tasks_per_annotator=5)["id"]
    ((_, token),) = annotators(server, cid, 1)
    tickets: list[str] = []
    page.on(
        "request", lambda r: tickets.append(r.url) if r.url.endswith("/stream-ticket") else None
    )
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("body[data-live=stream]", timeout=WAIT_MS)
    pause_timers(page)
    # Each ended stream is followed by a new ticket and stream, timers or not.
    with page.expect_request(lambda r: r.url.endswith("/stream-ticket"), timeout=WAIT_MS):
        pass
    with page.expect_request(lambda r: r.url.endswith("/stream-ticket"), timeout=WAIT_MS):
        pass
    rank(server, token)
    render_round(server.app, cid, 1)
    page.wait_for_selector("#strip figure[data-round='0'] img", timeout=WAIT_MS)
    assert len(tickets) >= 3 and page.get_attribute("body", "data-live") == "stream"
    assert errors == []
