"""The task page's failure paths in headless Chromium: a lease that runs out while the page is
open (the picks are kept), and a ranking the server turns down (4xx) on submit.

The coordinator serves over HTTP from a thread (werkzeug ``make_server``) on a SQLite database
of the test's own; rounds are rendered in process by ``render_round`` (the GPU worker's part),
so no Celery worker runs. The annotator is a pool annotator with two campaigns open: once the
first task is lost, the page must move on to the other campaign's round without a reload (the
server never leases a round twice to the same annotator).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import select, update

from rankloop.core.contracts import MIN_LEASE_S
from tests.fixtures.browser import wait_for_task_change
from tests.fixtures.coordinator import Owner, bearer, make_app, render_round

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 60_000  # generous for a busy 2-core machine; never asserted as a timing
HTTP_TIMEOUT_S = 60  # the test's own requests to the server thread: as generous, never a timing
DESKTOP = {"width": 1280, "height": 800}
# Every task id the page puts on screen, in order (a re-shown task shows up twice).
WATCH_TASKS = """
window.__sameDocument = 'never reloaded';
window.__shown = [];
const note = () => {
  const task = document.querySelector('#task');
  if (!task.hidden && task.dataset.taskId && window.__shown.at(-1) !== task.dataset.taskId) {
    window.__shown.push(task.dataset.taskId);
  }
};
new MutationObserver(note).observe(document.querySelector('#task'), {attributes: true});
note();
"""


@dataclass
class Server:
    base_url: str
    app: Any
    owner: Owner

    def open_round(self, **settings: Any) -> dict:
        """A running campaign whose round 0 is rendered and open. A ``lease_s`` under the API's
        floor (``MIN_LEASE_S``), for a lease that runs out while a test watches, is stored
        directly (a stored value beyond a bound is kept: ``CampaignSettings.from_stored``)."""
        lease_s = settings.get("lease_s")
        short = lease_s is not None and lease_s < MIN_LEASE_S
        if short:
            settings = {**settings, "lease_s": MIN_LEASE_S}
        body = {"m": 4, "annotators_per_round": 1, "rounds": 3, "start": True, **settings}
        campaign = self.owner.campaign(**body)
        if short:
            from service.db import session_scope
            from service.models import Campaign

            with self.app.app_context(), session_scope() as session:
                row = session.get(Campaign, campaign["id"])
                row.settings = {**row.settings, "lease_s": lease_s}
                session.commit()
        render_round(
            self.app, campaign["id"], 0, m=body["m"]
        )  # m candidates, + the attention image
        return campaign

    def pool_link(self, campaign_id: str) -> tuple[str, str]:
        """A pool annotator (works on every running campaign): its task link and token."""
        token = self.owner.annotators(campaign_id, 1, pool=True)[0]
        return f"{self.base_url}/task#token={token}", token

    def next_task(self, token: str) -> dict:
        response = requests.get(
            f"{self.base_url}/api/tasks/next", headers=bearer(token), timeout=HTTP_TIMEOUT_S
        )
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def expire(self, task_id: str) -> None:
        """End a lease on the server alone, as when the page slept through its countdown (a
        closed laptop, a throttled background tab)."""
        from service.db import session_scope
        from service.models import Assignment, utcnow

        with self.app.app_context(), session_scope() as session:
            session.execute(
                update(Assignment)
                .where(Assignment.id == task_id)
                .values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )
            session.commit()

    def rankings(self, task_id: str) -> list:
        from service.db import session_scope
        from service.models import Ranking

        with self.app.app_context(), session_scope() as session:
            return list(
                session.scalars(select(Ranking.order).where(Ranking.assignment_id == task_id))
            )


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    from werkzeug.serving import make_server

    from service import db

    app = make_app(tmp_path)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{http.server_port}", app, Owner(app.test_client()))
    finally:
        http.shutdown()
        db.get_engine(app).dispose()


@pytest.fixture
def context(browser) -> Iterator[Any]:
    opened = browser.new_context(viewport=DESKTOP)
    yield opened
    opened.close()


def open_tab(context, link: str) -> tuple[Any, list[str]]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(link)
    page.wait_for_selector("#task:not([hidden]) .tile", timeout=WAIT_MS)
    page.evaluate(WATCH_TASKS)
    return page, errors


def shown_task(page) -> str:
    page.wait_for_selector("#task:not([hidden]) .tile", timeout=WAIT_MS)
    return page.get_attribute("#task", "data-task-id")


def wait_for_other_task(page, previous: str) -> str:
    wait_for_task_change(page, previous, WAIT_MS)
    return shown_task(page)


def wait_for_toast(page, text: str) -> str:
    page.wait_for_function(
        "text => { const t = document.querySelector('#toast'); return !t.hidden && t.textContent.includes(text); }",
        arg=text,
        timeout=WAIT_MS,
    )
    return page.text_content("#toast")


def rank_all_by_keys(page, keys: list[str]) -> list[str]:
    """Press the image keys in this order; the display-order image ids as ranked, best first."""
    images = page.eval_on_selector_all(".tile", "nodes => nodes.map(n => n.dataset.id)")
    for key in keys:
        page.keyboard.press(key)
    assert page.is_enabled("#submit")
    picked = [images[int(key) - 1] for key in keys]
    return picked + [image for image in images if image not in picked]


# ------------------------------------------------------------------------------- tests


def test_a_lease_that_runs_out_gives_a_notice_and_the_set_again_with_the_picks(
    server, context, screenshot_dir
):
    short = server.open_round(name="Short lease", prompt="a short-lived apple", lease_s=5)
    server.open_round(name="Next campaign", prompt="a patient pear", lease_s=600)
    link, token = server.pool_link(short["id"])
    page, errors = open_tab(context, link)
    first = shown_task(page)
    served: list[str] = []  # the task of each /api/tasks/next answer from here on
    page.on(
        "response",
        lambda r: served.append(r.json()["task_id"]) if r.url.endswith("/api/tasks/next") else None,
    )
    assert page.text_content("#prompt") == "a short-lived apple"
    assert page.is_visible("#lease")
    page.keyboard.press("1")  # a pick in progress outlives the lease
    page.screenshot(path=screenshot_dir / "task-lease-running.png")

    notice = wait_for_toast(page, "Time ran out")
    assert notice == (
        "Time ran out, but this set is still yours: your picks are kept and the clock starts again."
    )
    page.screenshot(path=screenshot_dir / "task-lease-ran-out.png")

    # Nobody else took the round, so the server renews this annotator's own lapsed lease (a
    # small team's round could otherwise never reach its quorum): the same set, a fresh clock,
    # the pick kept.
    page.wait_for_function(
        """() => {
            const task = document.querySelector('#task');
            const lease = document.querySelector('#lease').textContent;
            return !task.hidden && /^0:0[345] left$/.test(lease)
                && document.querySelectorAll('.tile.ranked').length === 1;
        }""",
        timeout=WAIT_MS,
    )
    assert page.evaluate("window.__sameDocument") == "never reloaded"
    assert shown_task(page) == first
    assert page.text_content("#prompt") == "a short-lived apple"
    held = server.next_task(token)
    assert held["task_id"] == first and held["campaign_id"] == short["id"]
    # One request when the lease ran out, not a burst of them while it was still running.
    assert served == [first], "the page asked again before the lease ran out"
    assert server.rankings(first) == []
    page.screenshot(path=screenshot_dir / "task-lease-fresh.png")
    assert errors == []


def test_a_repeated_submit_shows_the_server_message_and_moves_on(server, context, screenshot_dir):
    campaign = server.open_round(name="Two tabs", prompt="a shared plum", lease_s=600)
    server.open_round(name="Next campaign", prompt="a patient pear", lease_s=600)
    link, _token = server.pool_link(campaign["id"])
    # The same annotator has the task open in two tabs: both show its one lease.
    first_tab, first_errors = open_tab(context, link)
    second_tab, second_errors = open_tab(context, link)
    task = shown_task(first_tab)
    assert shown_task(second_tab) == task
    late_order = rank_all_by_keys(second_tab, ["1", "2", "3", "4"])
    sent_order = rank_all_by_keys(first_tab, ["4", "3", "2", "1"])
    first_tab.keyboard.press("Enter")
    following = wait_for_other_task(first_tab, task)
    assert server.rankings(task) == [sent_order]

    second_tab.bring_to_front()
    second_tab.keyboard.press("Enter")
    message = wait_for_toast(second_tab, "already has your ranking")
    second_tab.screenshot(path=screenshot_dir / "task-submit-repeated.png")
    # The server's message, as a sentence of its own, then where the page goes.
    assert message.startswith("This task already has your ranking")
    assert message.endswith(". Moving on to the next set.")
    assert wait_for_other_task(second_tab, task) == following
    assert second_tab.text_content("#prompt") == "a patient pear"
    assert second_tab.text_content("#done-count") == "0 done this visit"
    # The refused ranking changed nothing: the first one stands, once.
    assert server.rankings(task) == [sent_order] and sent_order != late_order
    second_tab.screenshot(path=screenshot_dir / "task-submit-repeated-next.png")
    assert first_errors == [] and second_errors == []


def test_a_late_submit_after_a_takeover_shows_the_server_message_and_moves_on(
    server, context, screenshot_dir
):
    campaign = server.open_round(name="Taken over", prompt="a contested quince", lease_s=600)
    server.open_round(name="Next campaign", prompt="a patient pear", lease_s=600)
    link, _token = server.pool_link(campaign["id"])
    page, errors = open_tab(context, link)
    task = shown_task(page)
    rank_all_by_keys(page, ["2", "1", "3", "4"])
    # The lease ends while the page still counts down, and another annotator takes the round.
    server.expire(task)
    rival = server.owner.annotators(campaign["id"], 1)[0]
    assert server.next_task(rival)["campaign_id"] == campaign["id"]

    page.keyboard.press("Enter")
    message = wait_for_toast(page, "went to someone else")
    page.screenshot(path=screenshot_dir / "task-submit-late.png")
    assert message.startswith("Your lease expired")
    assert message.endswith(". Moving on to the next set.")
    wait_for_other_task(page, task)
    assert page.text_content("#prompt") == "a patient pear"
    assert page.text_content("#done-count") == "0 done this visit"
    assert server.rankings(task) == []
    page.screenshot(path=screenshot_dir / "task-submit-late-next.png")
    assert errors == []


# ------------------------------------------------------------------------- offline phones

OFFLINE_NOTE = "Offline — your ranking will be sent when you are back online."


def wait_for_send_status(page, start: str) -> str:
    page.wait_for_function(
        "start => document.querySelector('#send-status').textContent.startsWith(start)",
        arg=start,
        timeout=WAIT_MS,
    )
    return page.text_content("#send-status")


def wait_for_retrying(page) -> None:
    """Until the page says it could not load a task and will try again (it is offline)."""
    page.wait_for_function(
        "() => { const s = document.querySelector('#status');"
        " return !s.hidden && s.dataset.kind === 'retrying'; }",
        timeout=WAIT_MS,
    )


def test_a_ranking_submitted_offline_is_sent_when_back_online(server, context, screenshot_dir):
    campaign = server.open_round(name="Offline", prompt="a travelling tangerine", lease_s=600)
    server.open_round(name="Next campaign", prompt="a patient pear", lease_s=600)
    link, _token = server.pool_link(campaign["id"])
    page, errors = open_tab(context, link)
    task = shown_task(page)
    order = rank_all_by_keys(page, ["3", "1", "4", "2"])

    context.set_offline(True)
    page.keyboard.press("Enter")
    # Said on the page, in a live region, and the ranking stays on screen, locked.
    assert wait_for_send_status(page, "Offline") == OFFLINE_NOTE
    assert page.get_attribute("#send-status", "role") == "status"
    assert page.is_visible("#send-status") and page.is_visible("#task")
    assert page.is_disabled("#submit")
    assert server.rankings(task) == []
    page.screenshot(path=screenshot_dir / "task-submit-offline.png")

    # Back online: the ranking goes by itself, and the page moves on; nobody clicks again.
    context.set_offline(False)
    assert wait_for_other_task(page, task) != task
    assert server.rankings(task) == [order]
    assert page.text_content("#prompt") == "a patient pear"
    assert page.text_content("#done-count") == "1 done this visit"
    assert page.text_content("#send-status") == ""
    assert errors == []


def test_a_ranking_the_server_failed_to_take_is_sent_again_by_itself(server, context):
    campaign = server.open_round(name="Flaky submit", prompt="a flaky fig", lease_s=600)
    server.open_round(name="Next campaign", prompt="a patient pear", lease_s=600)
    link, _token = server.pool_link(campaign["id"])
    page, errors = open_tab(context, link)
    task = shown_task(page)
    order = rank_all_by_keys(page, ["2", "4", "1", "3"])
    failing = {"left": 2}  # the first two tries answer 503, as a restarting server does

    def flaky(route):
        if failing["left"] > 0:
            failing["left"] -= 1
            route.fulfill(
                status=503,
                content_type="application/json",
                body='{"error": {"code": "unavailable", "message": "the database is restarting"}}',
            )
        else:
            route.continue_()

    page.route("**/api/tasks/*/ranking", flaky)
    # Every note the tray shows, kept: the retries may be through before a look could see one.
    page.evaluate(
        """() => { window.__notes = [];
                   const node = document.querySelector('#send-status');
                   new MutationObserver(() => window.__notes.push(node.textContent))
                     .observe(node, {childList: true, characterData: true, subtree: true}); }"""
    )
    page.keyboard.press("Enter")
    # Sent again with backoff, by itself; once through, the page moves on.
    assert wait_for_other_task(page, task) != task
    assert failing["left"] == 0
    notes = [note for note in page.evaluate("window.__notes") if note]
    assert notes and all(note.startswith("Not sent yet: ") for note in notes), notes
    assert notes[0].startswith("Not sent yet: The database is restarting. Trying again in ")
    assert server.rankings(task) == [order]
    assert page.text_content("#send-status") == ""
    assert errors == []


def test_a_lease_lost_while_offline_is_said_plainly(server, context, screenshot_dir):
    short = server.open_round(name="Short lease", prompt="a short-lived apple", lease_s=5)
    server.open_round(name="Next campaign", prompt="a patient pear", lease_s=600)
    link, _token = server.pool_link(short["id"])
    page, errors = open_tab(context, link)
    task = shown_task(page)
    page.keyboard.press("1")
    context.set_offline(True)
    # The countdown runs out offline: the page cannot know yet whose the set is, and says nothing
    # it does not know.
    wait_for_retrying(page)
    assert "someone else" not in (page.text_content("#toast") or "")
    # Meanwhile another annotator takes the round.
    rival = server.owner.annotators(short["id"], 1)[0]
    assert server.next_task(rival)["campaign_id"] == short["id"]

    context.set_offline(False)
    notice = wait_for_toast(page, "someone else")
    assert (
        notice == "This round was given to someone else while you were offline; here is a new one."
    )
    assert wait_for_other_task(page, task) != task
    assert page.text_content("#prompt") == "a patient pear"
    assert page.eval_on_selector_all(".tile.ranked", "nodes => nodes.length") == 0
    page.screenshot(path=screenshot_dir / "task-lease-lost-offline.png")
    assert errors == []


def test_a_lease_that_ran_out_offline_keeps_the_picks_when_nobody_took_the_set(
    server, context, screenshot_dir
):
    short = server.open_round(name="Short lease", prompt="a short-lived apple", lease_s=5)
    link, _token = server.pool_link(short["id"])
    page, errors = open_tab(context, link)
    task = shown_task(page)
    page.keyboard.press("2")
    context.set_offline(True)
    wait_for_retrying(page)

    context.set_offline(False)
    notice = wait_for_toast(page, "Time ran out")
    assert notice == (
        "Time ran out, but this set is still yours: your picks are kept and the clock starts again."
    )
    assert shown_task(page) == task
    page.wait_for_function(
        "() => document.querySelectorAll('.tile.ranked').length === 1", timeout=WAIT_MS
    )
    assert errors == []
