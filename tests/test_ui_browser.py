"""The task page and the dashboard in headless Chromium, against a real running stack.

The coordinator serves over HTTP from a thread (werkzeug ``make_server``) on the session's
PostgreSQL database; real Celery workers run as subprocesses on the session's Redis key prefix:
the GPU worker renders every round with the ``cppn`` generator into a local object store, and
the bookkeeping worker records each render. An annotator ranks one round by drag and drop,
the next by keyboard and the next by taps on a phone-sized touch screen; each ranking is read
back from the database, and each time the next task must appear without a page reload.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from tests.fixtures.browser import wait_for_task_change

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
WAIT_MS = 90_000  # a round renders on a busy CPU; generous, never asserted as a timing
PROMPT = 'a lighthouse at dusk <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class Stack:
    base_url: str
    admin: str
    app: Any
    workers: dict[str, subprocess.Popen]
    logs: Path

    def assert_workers_alive(self) -> None:
        for name, worker in self.workers.items():
            if worker.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text()[-3000:]
                pytest.fail(f"the {name} worker exited ({worker.returncode}):\n{tail}")

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(
            method,
            f"{self.base_url}{path}",
            headers={"Authorization": f"Bearer {self.admin}"},
            timeout=30,
            **kwargs,
        )
        assert response.ok, (response.status_code, response.text)
        return response.json() if response.content else None

    def campaign(self, **settings: Any) -> dict:
        body = {
            "name": "Browser test",
            "prompt": PROMPT,
            "generator": "cppn",
            "m": 4,
            "width": 192,
            "height": 192,
            "annotators_per_round": 1,
            "rounds": 8,
            "lease_s": 600,
            "tasks_per_annotator": 50,
            "start": True,
            **settings,
        }
        return self.api("POST", "/api/campaigns", json=body)

    def annotator(self, campaign_id: str) -> dict:
        created = self.api("POST", f"/api/campaigns/{campaign_id}/annotators", json={"count": 1})
        return created["annotators"][0]

    def annotator_link(self, campaign_id: str) -> str:
        return self.annotator(campaign_id)["link"]

    def rank_by_api(self, campaign_id: str, rounds: int) -> None:
        """One annotator ranks ``rounds`` rounds through the HTTP API, as the task page would,
        waiting for each round's render."""
        headers = {"Authorization": f"Bearer {self.annotator(campaign_id)['token']}"}
        for _ in range(rounds):
            deadline = time.monotonic() + WAIT_MS / 1000
            while True:
                response = requests.get(
                    f"{self.base_url}/api/tasks/next", headers=headers, timeout=30
                )
                assert response.status_code in (200, 204), response.text
                if response.status_code == 200:
                    break
                self.assert_workers_alive()
                assert time.monotonic() < deadline, "the next round was never rendered"
                time.sleep(0.5)
            task = response.json()
            order = [image["id"] for image in task["images"]]
            ranked = requests.post(
                f"{self.base_url}/api/tasks/{task['task_id']}/ranking",
                json={"order": order},
                headers=headers,
                timeout=30,
            )
            assert ranked.status_code == 201, ranked.text

    def stored_order(self, task_id: str) -> list:
        from service.db import session_scope
        from service.models import Ranking

        with self.app.app_context(), session_scope() as session:
            return session.scalar(select(Ranking.order).where(Ranking.assignment_id == task_id))


def _start_worker(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "celery", *args, "--pool", "solo", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres_url, redis_url, redis_prefix, session_tag) -> Iterator[Stack]:
    from werkzeug.serving import make_server

    from rankloop.commands.web import create_web_app
    from service import db

    work = tmp_path_factory.mktemp("ui-stack")
    tag = session_tag
    admin = secrets.token_urlsafe(16)
    # A prefix of our own: no other module's worker may take these renders.
    transport = {"global_keyprefix": f"{redis_prefix}ui-browser:"}
    logs = ROOT / "test-output" / "ui-browser"
    logs.mkdir(parents=True, exist_ok=True)
    app = create_web_app(
        {
            "DATABASE_URL": postgres_url,
            "STORE_URL": str(work / "objects"),
            "BROKER_URL": redis_url,
            "BROKER_TRANSPORT_OPTIONS": transport,
            "ADMIN_TOKEN": admin,
        }
    )
    db.create_all(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_port}"

    env = {
        **os.environ,
        "RANKLOOP_DATABASE_URL": postgres_url,
        "RANKLOOP_STORE_URL": str(work / "objects"),
        "RANKLOOP_BROKER_URL": redis_url,
        "RANKLOOP_BROKER_TRANSPORT_OPTIONS": json.dumps(transport),
        "RANKLOOP_VAR_DIR": str(work / "var"),
        "RANKLOOP_ADMIN_TOKEN": admin,
    }
    workers = {
        "gpu": _start_worker(
            ["-A", "gpu_worker.celery_app", "worker", "-Q", "gpu", "-n", f"ui-gpu-{tag}@%h"],
            env,
            logs / "gpu.log",
        ),
        "coord": _start_worker(
            ["-A", "service.worker", "worker", "-Q", "coord", "-n", f"ui-coord-{tag}@%h"],
            env,
            logs / "coord.log",
        ),
    }
    try:
        yield Stack(base_url=base_url, admin=admin, app=app, workers=workers, logs=logs)
    finally:
        for worker in workers.values():
            worker.terminate()
        for worker in workers.values():
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        server.shutdown()
        db.get_engine(app).dispose()


@pytest.fixture(autouse=True)
def _workers_alive(stack: Stack) -> Iterator[None]:
    stack.assert_workers_alive()
    yield
    stack.assert_workers_alive()


@pytest.fixture(scope="module")
def campaign(stack: Stack) -> dict:
    return stack.campaign()


@pytest.fixture(scope="module")
def annotator_link(stack: Stack, campaign: dict) -> str:
    return stack.annotator_link(campaign["id"])


@dataclass
class Tab:
    page: Any
    first_response: Any
    js_errors: list[str]


@pytest.fixture(scope="module")
def desktop_tab(browser, stack: Stack, annotator_link: str) -> Iterator[Tab]:
    """One desktop tab kept open across the drag and keyboard rounds (no reload in between)."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    response = page.goto(annotator_link)
    page.evaluate("window.__sameDocument = 'never reloaded'")
    yield Tab(page, response, errors)
    context.close()


@pytest.fixture
def desktop(desktop_tab: Tab) -> Any:
    return desktop_tab.page


# ------------------------------------------------------------------------------- helpers


def current_task(page) -> dict:
    """Wait for a task on screen; return its id and its image ids in display order."""
    page.wait_for_selector("#task:not([hidden]) .tile", timeout=WAIT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=WAIT_MS,
    )
    return {
        "task_id": page.get_attribute("#task", "data-task-id"),
        "images": page.eval_on_selector_all(".tile", "nodes => nodes.map(n => n.dataset.id)"),
    }


def wait_for_next_task(page, previous_task_id: str) -> dict:
    wait_for_task_change(page, previous_task_id, WAIT_MS)
    return current_task(page)


def expected_full_order(picked: list[str], images: list[str]) -> list[str]:
    """What the page sends for a full ranking: the picks, then the one image left."""
    rest = [image for image in images if image not in picked]
    return picked + rest


def mouse_drag(page, source, target, *, where: float = 0.5) -> None:
    """Press on ``source``, move in steps (pointer events), release over ``target``."""
    start = source.bounding_box()
    end = target.bounding_box()
    x0, y0 = start["x"] + start["width"] / 2, start["y"] + start["height"] / 2
    x1, y1 = end["x"] + end["width"] * where, end["y"] + end["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 12, y0 + 12, steps=3)
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()


def _touch(cdp, kind: str, x: float = 0, y: float = 0) -> None:
    points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def _centre(locator) -> tuple[float, float]:
    locator.evaluate("node => node.scrollIntoView({block: 'center'})")
    box = locator.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def touch_drag(page, source, target) -> None:
    """A finger pressing on ``source``, holding still, then sliding onto ``target``."""
    cdp = page.context.new_cdp_session(page)
    x0, y0 = _centre(source)
    box = target.bounding_box()
    x1, y1 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2
    _touch(cdp, "touchStart", x0, y0)
    page.wait_for_timeout(400)  # longer than the page's long-press delay
    for step in range(1, 13):
        _touch(cdp, "touchMove", x0 + (x1 - x0) * step / 12, y0 + (y1 - y0) * step / 12)
    _touch(cdp, "touchEnd")
    cdp.detach()


def swipe_up(page, over) -> None:
    cdp = page.context.new_cdp_session(page)
    x, y = _centre(over)
    _touch(cdp, "touchStart", x, y + 60)
    for step in range(1, 11):
        _touch(cdp, "touchMove", x, y + 60 - 24 * step)
    _touch(cdp, "touchEnd")
    cdp.detach()


def tray_order(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#ranking .rank-slot.filled",
        "slots => slots.map(s => [...s.querySelectorAll('.rank-item')].map(i => i.dataset.dragId))",
    )


# ------------------------------------------------------------------------------- tests


def test_task_page_has_a_strict_csp_and_shows_the_prompt_as_text(
    desktop_tab, desktop, annotator_link
):
    headers = desktop_tab.first_response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # Framed by MTurk's worker sites only (ExternalQuestion HITs), by no one else.
    assert "x-frame-options" not in headers
    assert "frame-ancestors https://www.mturk.com " in csp
    current_task(desktop)
    assert desktop.text_content("#prompt") == PROMPT
    assert desktop.evaluate("window.__pwned") is None
    assert desktop.locator("#prompt img, #prompt script").count() == 0
    # The token moved from the address bar into the tab's sessionStorage.
    assert "token=" not in desktop.url
    token = annotator_link.split("#token=", 1)[1]
    assert desktop.evaluate("sessionStorage.getItem('rankloop.token')") == token
    assert desktop_tab.js_errors == []


def test_rank_a_round_by_drag_and_drop(desktop, stack, screenshot_dir):
    task = current_task(desktop)
    images = task["images"]
    tiles = desktop.locator(".tile-pick")
    # Drag every image but the first into the tray, last one first, each onto the empty slot.
    wanted = list(reversed(images[1:]))
    for image_id in wanted:
        index = images.index(image_id)
        mouse_drag(desktop, tiles.nth(index), desktop.locator("#ranking .rank-slot.empty").first)
    assert tray_order(desktop) == [[i] for i in wanted]
    # Reorder inside the tray: the first-ranked image goes after the second.
    filled = desktop.locator("#ranking .rank-slot.filled")
    mouse_drag(desktop, filled.nth(0).locator(".rank-item"), filled.nth(1), where=0.9)
    picked = [wanted[1], wanted[0], *wanted[2:]]
    assert tray_order(desktop) == [[i] for i in picked]
    # Dragging the first tile onto the first slot puts it on top.
    mouse_drag(desktop, tiles.nth(0), filled.nth(0), where=0.1)
    picked = [images[0], *picked]
    assert tray_order(desktop) == [[i] for i in picked]
    assert desktop.is_enabled("#submit")
    assert desktop.get_attribute(".tile:nth-child(1) .tile-pick", "aria-pressed") == "true"
    desktop.wait_for_function("() => document.querySelector('#live').textContent.includes('1st')")
    desktop.screenshot(path=screenshot_dir / "task-desktop-drag.png")

    desktop.click("#submit")
    following = wait_for_next_task(desktop, task["task_id"])
    assert stack.stored_order(task["task_id"]) == expected_full_order(picked, images)
    assert desktop.text_content("#done-count") == "1 done this visit"
    assert following["task_id"] != task["task_id"]


def test_rank_a_round_by_keyboard(desktop_tab, desktop, stack, screenshot_dir):
    task = current_task(desktop)
    images = task["images"]
    keys = [str(i + 1) for i in range(len(images))]
    # Shift + key opens the full-size view of that image; Escape closes it.
    desktop.keyboard.press("Shift+Digit2")
    desktop.wait_for_selector("#viewer[open]")
    full_size = desktop.get_attribute("#viewer-img", "src")
    assert full_size == desktop.get_attribute(".tile:nth-child(2) img", "src")
    assert desktop.get_attribute("#viewer-img", "alt")
    desktop.keyboard.press("Escape")
    desktop.wait_for_selector("#viewer:not([open])", state="attached")
    assert tray_order(desktop) == []
    # Best first: the second image, then the last, then the rest in display order; one
    # stray key is taken back with Backspace on the way.
    order_keys = [keys[1], keys[-1], *keys[2:-1]]
    desktop.keyboard.press(order_keys[0])
    desktop.keyboard.press(order_keys[1])
    desktop.keyboard.press(keys[0])
    desktop.keyboard.press("Backspace")
    for key in order_keys[2:]:
        desktop.keyboard.press(key)
    picked = [images[keys.index(k)] for k in order_keys]
    assert tray_order(desktop) == [[i] for i in picked]
    assert desktop.is_enabled("#submit")
    desktop.keyboard.press("Tab")
    focused = desktop.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none", "keyboard focus must be visible"
    desktop.screenshot(path=screenshot_dir / "task-desktop-keyboard.png")

    # Enter on a focused tile would rank that tile: Tab on to Submit, then Enter sends.
    for _ in range(4 * len(images)):
        if desktop.evaluate("document.activeElement.id") == "submit":
            break
        desktop.keyboard.press("Tab")
    desktop.keyboard.press("Enter")
    wait_for_next_task(desktop, task["task_id"])
    assert stack.stored_order(task["task_id"]) == expected_full_order(picked, images)
    assert desktop.text_content("#done-count") == "2 done this visit"
    assert desktop_tab.js_errors == []


def test_rank_a_round_by_taps_on_a_phone(browser, stack, annotator_link, desktop, screenshot_dir):
    # The same annotator continues on a phone: the lease they hold is handed to the new tab.
    context = browser.new_context(
        viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2
    )
    try:
        page = context.new_page()
        page.goto(annotator_link)
        page.evaluate("window.__sameDocument = 'never reloaded'")
        task = current_task(page)
        images = task["images"]
        tiles = page.locator(".tile-pick")
        assert len(images) >= 4
        order = [2, 0, 3, *range(4, len(images))][: len(images) - 1]
        tiles.nth(1).tap()
        tiles.nth(1).tap()  # a second tap takes it back
        for index in order[:-1]:
            tiles.nth(index).tap()
        # The last one by touch drag (press, hold, move): onto the top of the ranking.
        touch_drag(page, tiles.nth(order[-1]), page.locator("#ranking .rank-slot.filled").first)
        picked = [images[i] for i in [order[-1], *order[:-1]]]
        assert tray_order(page) == [[i] for i in picked]
        # A swipe over the images scrolls the page; it neither picks nor drags.
        swipe_up(page, tiles.nth(1))
        assert tray_order(page) == [[i] for i in picked]
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], "the task page must not scroll sideways on a phone"
        page.screenshot(path=screenshot_dir / "task-phone.png")

        page.locator("#submit").tap()
        wait_for_next_task(page, task["task_id"])
        assert stack.stored_order(task["task_id"]) == expected_full_order(picked, images)
        page.screenshot(path=screenshot_dir / "task-phone-next.png")
    finally:
        context.close()


def test_top_k_with_a_declared_tie(browser, stack, screenshot_dir):
    campaign = stack.campaign(
        name="Top-2 with ties", prompt="a teapot", k=2, allow_ties=True, tasks_per_annotator=1
    )
    link = stack.annotator_link(campaign["id"])
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(link)
        task = current_task(page)
        images = task["images"]
        page.keyboard.press("3")
        assert not page.is_enabled("#submit"), "top-2: one pick is not enough"
        page.keyboard.press("=")  # the next pick ties with the previous one
        page.keyboard.press("1")
        assert tray_order(page) == [[images[2], images[0]]]
        page.keyboard.press("2")  # a third pick does not fit in a top-2
        assert tray_order(page) == [[images[2], images[0]]]
        page.wait_for_function(
            "() => document.querySelector('#live').textContent.includes('top 2')"
        )
        page.screenshot(path=screenshot_dir / "task-top2-tie.png")
        page.keyboard.press("Enter")
        # One task was the quota: the crowd platform's completion code appears.
        page.wait_for_selector("#code-banner:not([hidden])", timeout=WAIT_MS)
        assert page.text_content("#completion-code") == campaign["completion_code"]
        assert stack.stored_order(task["task_id"]) == [[images[2], images[0]]]
    finally:
        context.close()


def test_clear_messages_without_a_task(browser, stack, screenshot_dir):
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(f"{stack.base_url}/task")
        page.wait_for_selector("#status:not([hidden])")
        assert "personal task link" in page.text_content("#status-title")
        page.goto(f"{stack.base_url}/task#token=not-a-real-token")
        page.wait_for_function(
            "() => /not valid/.test(document.querySelector('#status-title').textContent)"
        )
        # A campaign that has not started has nothing open yet, and the page says so.
        draft = stack.campaign(name="Not started", start=False)
        page.goto(stack.annotator_link(draft["id"]))
        page.wait_for_function(
            "() => /not started/.test(document.querySelector('#status-title').textContent)"
        )
        assert page.is_visible("#status-retry")
        assert page.is_hidden("#task") and page.is_hidden("#tray")
        page.screenshot(path=screenshot_dir / "task-nothing-open.png")
    finally:
        context.close()


@pytest.fixture
def ranked_campaign(stack: Stack) -> dict:
    """A campaign of its own with three rounds ranked by one annotator (the fourth may be
    rendering): the dashboard test needs no other test to have run before it."""
    campaign = stack.campaign(name="Dashboard test")
    stack.rank_by_api(campaign["id"], rounds=3)
    assert stack.api("GET", f"/api/campaigns/{campaign['id']}")["rounds_done"] == 3
    return campaign


def test_dashboard_shows_the_rounds_and_controls_work(
    browser, stack, ranked_campaign, screenshot_dir
):
    campaign = ranked_campaign
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        response = page.goto(f"{stack.base_url}/dashboard")
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        page.wait_for_selector("#login:not([hidden])")
        page.screenshot(path=screenshot_dir / "dashboard-login.png")
        page.fill("#owner-key", "not the key")
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#login-error:not([hidden])")
        page.fill("#owner-key", stack.admin)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector(f"#campaigns a[href$='{campaign['id']}']")
        page.screenshot(path=screenshot_dir / "dashboard-list.png")

        page.click(f"#campaigns a[href$='{campaign['id']}']")
        page.wait_for_selector("#campaign:not([hidden])")
        assert page.text_content("#campaign-prompt") == PROMPT
        assert page.evaluate("window.__pwned") is None
        page.wait_for_function(
            "() => document.querySelectorAll('#strip figure[data-round] img').length >= 3",
            timeout=WAIT_MS,
        )
        history = stack.api("GET", f"/api/campaigns/{campaign['id']}")["history"]
        with_agreement = [r for r in history if isinstance(r["agreement"], (int, float))]
        page.wait_for_function(
            "n => document.querySelectorAll('#plot-agreement circle').length >= n",
            arg=len(with_agreement),
        )
        # Improvement (the best image's strength), agreement, latent moved, line-search step.
        assert page.locator("#plots figure").count() == 4
        assert page.locator("#plot-improvement").count() == 1
        row = page.locator("#annotators tbody tr").first
        assert row.locator("td").nth(2).text_content() == "3"
        # Controls: pause and resume go through the API and show in the status badge.
        page.wait_for_selector("[data-action=pause]:not([disabled])")
        page.click("[data-action=pause]")
        page.wait_for_function(
            "() => document.querySelector('#campaign-status').textContent === 'paused'"
        )
        page.click("[data-action=resume]")
        page.wait_for_function(
            "() => document.querySelector('#campaign-status').textContent === 'running'"
        )
        # Add annotators: their links show, ready to copy.
        page.fill("#add-count", "2")
        page.click("#add-form button[type=submit]")
        page.wait_for_selector("#new-links li >> nth=1")
        links = page.locator("#new-links code").all_text_contents()
        assert len(links) == 2 and all("/task#token=" in link for link in links)
        # Export: every ranking of the campaign, one JSON line each.
        with page.expect_download() as download:
            page.click("#export")
        lines = Path(download.value.path()).read_text().splitlines()
        assert len(lines) == 3
        assert [json.loads(line)["round"] for line in lines] == [0, 1, 2]
        page.screenshot(path=screenshot_dir / "dashboard-campaign.png", full_page=True)
    finally:
        context.close()
