"""The task page as a paid crowd worker meets it, on a phone (390×844, touch) and a desktop, in
headless Chromium: a slow tap ranks, a lapsed lease and a reload keep the picks, Enter never
submits by accident, the page says which case it waits in, and axe-core finds nothing.

The coordinator serves over HTTP from a thread on a SQLite database of the test's own; rounds
are rendered in process (``render_round``), as in ``tests/test_ui_failure_paths.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests import test_ui_failure_paths as failure_paths
from tests.fixtures.coordinator import bearer
from tests.test_ui_failure_paths import WAIT_MS, Server, shown_task, wait_for_toast

server = failure_paths.server  # the coordinator over HTTP, shared with the failure paths

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWPORTS: dict[str, dict[str, Any]] = {
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "has_touch": True,
        "is_mobile": True,
        "device_scale_factor": 2,
    },
    "desktop": {"viewport": {"width": 1280, "height": 800}},
}


@pytest.fixture(params=list(VIEWPORTS))
def device(request, browser) -> Iterator[tuple[str, Any]]:
    """A browser context at phone or desktop size; its name and the context."""
    context = browser.new_context(**VIEWPORTS[request.param])
    yield request.param, context
    context.close()


def open_page(context, link: str) -> tuple[Any, list[str]]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(link)
    return page, errors


def own_link(server: Server, campaign_id: str) -> tuple[str, str]:
    token = server.owner.annotators(campaign_id, 1)[0]
    return f"{server.base_url}/task#token={token}", token


def ranked(page) -> list[str]:
    """The image ids in the tray, best first (ties flattened)."""
    return page.eval_on_selector_all(
        "#ranking .rank-slot.filled .rank-item", "items => items.map(i => i.dataset.dragId)"
    )


def rank_by_api(server: Server, token: str, task: dict) -> None:
    """Send ``task``'s images in their display order as this annotator's ranking."""
    order = [image["id"] for image in task["images"]]
    sent = server.owner.client.post(
        f"/api/tasks/{task['task_id']}/ranking", json={"order": order}, headers=bearer(token)
    )
    assert sent.status_code in (200, 201), sent.json


def tile_ids(page) -> list[str]:
    return page.eval_on_selector_all(".tile", "nodes => nodes.map(n => n.dataset.id)")


def tap(page, device_name: str, locator, hold_ms: int = 0) -> None:
    """A tap (a touch on the phone, a click on the desktop), held ``hold_ms`` before letting go."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if device_name == "phone":
        cdp = page.context.new_cdp_session(page)
        point = [{"x": x, "y": y}]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": point})
        page.wait_for_timeout(hold_ms)  # how long the finger rests: the input, not a check
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        cdp.detach()
    else:
        page.mouse.move(x, y)
        page.mouse.down()
        page.wait_for_timeout(hold_ms)
        page.mouse.up()


def check_again(page) -> None:
    """Press "Check again" as a worker would, unless the page's own poll already moved on.

    The waiting page polls by itself, so the button can vanish between a look and a click."""
    page.evaluate(
        "() => { const b = document.querySelector('#status-retry'); if (!b.hidden) b.click(); }"
    )


def status_title(page, pattern: str) -> str:
    try:
        page.wait_for_function(
            "re => new RegExp(re).test(document.querySelector('#status-title').textContent)"
            " && !document.querySelector('#status').hidden",
            arg=pattern,
            timeout=WAIT_MS,
        )
    except PlaywrightTimeout:
        # Say what the page showed instead: the status, a ranking not sent yet, a toast.
        shown = page.evaluate(PAGE_STATE)
        raise AssertionError(
            f"no status {pattern!r} within {WAIT_MS} ms; the page: {shown}"
        ) from None
    return page.text_content("#status-title")


PAGE_STATE = """() => Object.fromEntries(
  ["#status", "#status-title", "#status-text", "#send-status", "#toast", "#task", "#submit"]
    .map(s => [s, document.querySelector(s)])
    .map(([s, n]) => [s, n ? (n.hidden ? "(hidden) " : "") + n.textContent.trim().slice(0, 200)
                             + (n.disabled ? " (disabled)" : "") : null]))"""


def axe_violations(page) -> list[str]:
    """axe-core's violations on the page as it is now (any impact), one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


# ------------------------------------------------------------------------------- tests


def test_a_slow_tap_ranks_and_a_reload_keeps_the_picks(server, device, screenshot_dir):
    name, context = device
    campaign = server.open_round(name="Slow taps", prompt="a patient plum", lease_s=600)
    link, _token = own_link(server, campaign["id"])
    page, errors = open_page(context, link)
    task = shown_task(page)
    ids = tile_ids(page)
    tiles = page.locator(".tile-pick")
    tap(page, name, tiles.nth(2))  # a quick tap
    tap(page, name, tiles.nth(0), hold_ms=700)  # a slow one: well past the long-press delay
    assert ranked(page) == [ids[2], ids[0]]
    assert (
        page.get_attribute(".tile:nth-child(1) .tile-pick", "aria-label") == "Image 1, ranked 2nd"
    )
    page.screenshot(path=screenshot_dir / f"task-{name}-slow-tap.png")

    page.reload()
    assert shown_task(page) == task
    page.wait_for_selector("#ranking .rank-slot.filled")
    assert ranked(page) == [ids[2], ids[0]], "the picks must survive a reload"
    assert errors == []


def test_a_lapsed_lease_keeps_the_picks_and_says_so(server, device, screenshot_dir):
    name, context = device
    campaign = server.open_round(name="Short lease", prompt="a short-lived apple", lease_s=4)
    link, _token = own_link(server, campaign["id"])
    page, errors = open_page(context, link)
    task = shown_task(page)
    ids = tile_ids(page)
    tap(page, name, page.locator(".tile-pick").nth(1))
    notice = wait_for_toast(page, "Time ran out")
    assert notice == (
        "Time ran out, but this set is still yours: your picks are kept and the clock starts again."
    )
    assert shown_task(page) == task
    assert ranked(page) == [ids[1]]
    page.screenshot(path=screenshot_dir / f"task-{name}-lease-kept.png")
    assert axe_violations(page) == []  # the countdown's warning colours included

    # Someone else takes the round while the lease is lapsed and ranks it: the page says so,
    # the picks go, and the page waits for the next round's images.
    rival = server.owner.annotators(campaign["id"], 1)[0]
    server.expire(task)
    theirs = server.next_task(rival)
    assert theirs["task_id"] != task
    rank_by_api(server, rival, theirs)
    notice = wait_for_toast(page, "someone else")
    assert notice == "Time ran out and this set went to someone else."
    assert status_title(page, "New images") == "New images are being made"
    assert (
        page.evaluate("Object.keys(sessionStorage).some(k => k.startsWith('rankloop.picks.'))")
        is False
    )
    assert errors == []


def test_enter_submits_only_from_the_page_never_from_a_control(server, browser, screenshot_dir):
    context = browser.new_context(**VIEWPORTS["desktop"])
    try:
        campaign = server.open_round(name="Keys", prompt="a keyed kiwi", lease_s=600, m=4)
        link, token = own_link(server, campaign["id"])
        page, errors = open_page(context, link)
        task = shown_task(page)
        ids = tile_ids(page)
        # The page has focus, not a tile: "3" then Enter ranks image 3 and sends nothing.
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        assert ranked(page) == [ids[2]]
        assert wait_for_toast(page, "before sending").startswith("Rank ")
        # Enter on a focused Undo undoes, on a focused tile ranks that tile; neither sends,
        # not even once the ranking is complete.
        page.keyboard.press("1")
        page.keyboard.press("2")
        page.focus("#undo")
        page.keyboard.press("Enter")
        assert ranked(page) == [ids[2], ids[0]]
        page.focus(".tile:nth-child(2) .tile-pick")
        page.keyboard.press("Enter")
        assert ranked(page) == [ids[2], ids[0], ids[1]]
        page.keyboard.press("4")
        assert page.is_enabled("#submit")
        page.focus("#undo")
        page.keyboard.press("Enter")
        assert ranked(page) == [ids[2], ids[0], ids[1]]
        assert server.rankings(task) == []
        page.keyboard.press("4")
        # From the page (no control focused) Enter sends the finished ranking.
        page.focus("#main")
        page.keyboard.press("Enter")
        status_title(page, "Waiting|All done|New images")
        assert server.rankings(task) == [[ids[2], ids[0], ids[1], ids[3], *ids[4:]]]
        assert errors == []
        assert token
    finally:
        context.close()


def test_the_page_says_why_it_waits(server, device, screenshot_dir):
    name, context = device
    # Two rankings per round: after this annotator's, the page waits for one more person.
    campaign = server.open_round(
        name="Waiting", prompt="a waiting walnut", annotators_per_round=2, lease_s=600
    )
    link, _token = own_link(server, campaign["id"])
    page, errors = open_page(context, link)
    shown_task(page)
    for tile in range(4):
        tap(page, name, page.locator(".tile-pick").nth(tile))
    page.click("#submit")
    assert status_title(page, "Waiting for") == "Waiting for 1 more person"
    assert "keep it open" in page.text_content("#status-text")
    page.screenshot(path=screenshot_dir / f"task-{name}-waiting-others.png")

    assert server.owner.post(f"/api/campaigns/{campaign['id']}/pause").status_code == 200
    assert status_title(page, "paused") == "The study is paused"
    page.screenshot(path=screenshot_dir / f"task-{name}-paused.png")

    assert server.owner.post(f"/api/campaigns/{campaign['id']}/stop").status_code == 200
    check_again(page)
    assert status_title(page, "All done") == "All done. Thank you!"
    code = server.owner.get(f"/api/campaigns/{campaign['id']}").json["completion_code"]
    assert page.text_content("#completion-code") == code
    assert page.is_hidden("#status-retry")
    page.screenshot(path=screenshot_dir / f"task-{name}-finished.png")
    assert errors == []


def test_a_revoked_worker_is_told_so_while_waiting_and_after_a_reload(server, browser):
    context = browser.new_context(**VIEWPORTS["phone"])
    try:
        campaign = server.open_round(
            name="Revoked", prompt="a revoked raisin", annotators_per_round=2, lease_s=600
        )
        link, _token = own_link(server, campaign["id"])
        page, errors = open_page(context, link)
        shown_task(page)
        for tile in range(4):
            tap(page, "phone", page.locator(".tile-pick").nth(tile))
        page.click("#submit")
        assert status_title(page, "Waiting for") == "Waiting for 1 more person"

        path = f"/api/campaigns/{campaign['id']}/annotators"
        (annotator,) = server.owner.get(path).json["annotators"]
        revoked = server.owner.post(f"{path}/{annotator['id']}/revoke", json={})
        assert revoked.status_code == 200
        # Told while the page waits (no "keep it open"), and not as a mistyped link.
        assert status_title(page, "access") == "Your access to this study has ended"
        text = page.text_content("#status-text")
        assert "organiser has ended your access" in text and "mistyped" not in text
        assert page.is_hidden("#status-retry")

        page.reload()
        assert status_title(page, "access|not valid|personal") == (
            "Your access to this study has ended"
        )
        assert axe_violations(page) == []
        assert errors == []
    finally:
        context.close()


def test_a_key_pressed_for_a_ranked_image_says_it_was_taken_back(server, browser):
    context = browser.new_context(**VIEWPORTS["desktop"])
    try:
        campaign = server.open_round(name="Keys", prompt="a keyed kiwi", lease_s=600)
        link, _token = own_link(server, campaign["id"])
        page, errors = open_page(context, link)
        shown_task(page)
        ids = tile_ids(page)
        for key in ("1", "2", "3"):
            page.keyboard.press(key)
        page.wait_for_function(
            "() => document.querySelector('#live').textContent === 'Image 3 ranked 3rd.'",
            timeout=WAIT_MS,
        )
        page.keyboard.press("2")  # image 2 is ranked 2nd already: this takes it back, said so
        said = "Image 2 removed from position 2."
        page.wait_for_function(
            "said => document.querySelector('#live').textContent === said",
            arg=said,
            timeout=WAIT_MS,
        )
        assert page.get_attribute("#live", "aria-live") == "polite"
        assert wait_for_toast(page, said).startswith(said)
        assert ranked(page) == [ids[0], ids[2]]
        assert "press it again to take one back" in page.text_content("#instructions")
        assert errors == []
    finally:
        context.close()


def test_a_stopped_campaign_without_a_task_done_says_there_is_no_code(server, browser):
    context = browser.new_context(**VIEWPORTS["phone"])
    try:
        campaign = server.open_round(name="Stopped early", prompt="a late lime")
        link, _token = own_link(server, campaign["id"])
        assert server.owner.post(f"/api/campaigns/{campaign['id']}/stop").status_code == 200
        page, errors = open_page(context, link)
        assert status_title(page, "ended") == "This study has ended"
        assert "no completion code" in page.text_content("#status-text")
        assert page.is_hidden("#status-retry") and page.is_hidden("#code-banner")
        assert errors == []
    finally:
        context.close()


def test_a_worker_over_the_attention_policy_is_told_instead_of_given_a_code(server, browser):
    context = browser.new_context(**VIEWPORTS["phone"])
    try:
        campaign = server.open_round(
            name="Inattentive", prompt="a careless cherry", tasks_per_annotator=1,
            max_attention_failures=0,
        )  # fmt: skip
        link, token = own_link(server, campaign["id"])
        task = server.next_task(token)
        shown = server.owner.get(f"/api/campaigns/{campaign['id']}").json["current_round"]
        attention = {i["id"] for i in shown["images"] if i["role"] == "attention"}
        task["images"].sort(key=lambda image: image["id"] not in attention)  # it ranks first
        rank_by_api(server, token, task)
        page, errors = open_page(context, link)
        assert status_title(page, "No completion code") == "No completion code"
        assert "attention check" in page.text_content("#status-text")
        assert page.is_visible("#withheld-banner") and page.is_hidden("#code-banner")
        assert errors == []
    finally:
        context.close()


def test_a_failed_poll_is_retried_and_said(server, browser):
    context = browser.new_context(**VIEWPORTS["desktop"])
    try:
        campaign = server.open_round(name="Flaky", prompt="a flaky fig", annotators_per_round=2)
        link, token = own_link(server, campaign["id"])
        rank_by_api(server, token, server.next_task(token))
        failing = {"on": True}

        def maybe_fail(route):
            if failing["on"]:
                route.abort()
            else:
                route.continue_()

        context.route("**/api/tasks/next", maybe_fail)
        page, errors = open_page(context, link)
        assert status_title(page, "Connection problem") == "Connection problem"
        assert "Trying again in" in page.text_content("#status-text")
        failing["on"] = False
        assert status_title(page, "Waiting for") == "Waiting for 1 more person"
        assert errors == []
    finally:
        context.close()


def test_axe_finds_nothing_in_any_state(server, device, screenshot_dir):
    name, context = device
    campaign = server.open_round(
        name="Accessible", prompt="an accessible apricot", annotators_per_round=2, lease_s=600
    )
    link, _token = own_link(server, campaign["id"])
    page, errors = open_page(context, link)
    shown_task(page)
    found = {"task shown": axe_violations(page)}
    for tile in range(2):
        tap(page, name, page.locator(".tile-pick").nth(tile))
    page.keyboard.press("Tab")  # a focused tile, outline and all
    found["picks made"] = axe_violations(page)
    page.screenshot(path=screenshot_dir / f"task-{name}-picks.png")
    for tile in range(2, 4):
        tap(page, name, page.locator(".tile-pick").nth(tile))
    page.click("#submit")
    status_title(page, "Waiting for")
    found["waiting"] = axe_violations(page)
    assert server.owner.post(f"/api/campaigns/{campaign['id']}/stop").status_code == 200
    check_again(page)
    status_title(page, "All done")
    found["finished"] = axe_violations(page)
    assert {state: v for state, v in found.items() if v} == {}
    assert errors == []


def serious_axe_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    return [v for v in axe_violations(page) if "(serious)" in v or "(critical)" in v]


@pytest.mark.parametrize("width", [360, 390])
def test_on_a_narrow_phone_every_tray_slot_is_in_reach_and_axe_finds_nothing_serious(
    server, browser, screenshot_dir, width
):
    context = browser.new_context(
        **{**VIEWPORTS["phone"], "viewport": {"width": width, "height": 780}}
    )
    try:
        # Eight candidates and the attention image: nine to rank, nine slots in the tray.
        campaign = server.open_round(name="Narrow", prompt="a narrow nectarine", m=8, lease_s=600)
        link, _token = own_link(server, campaign["id"])
        page, errors = open_page(context, link)
        shown_task(page)
        assert len(tile_ids(page)) == 9
        found = {"task shown": serious_axe_violations(page)}
        for tile in range(3):
            tap(page, "phone", page.locator(".tile-pick").nth(tile))
        found["picks made"] = serious_axe_violations(page)
        page.screenshot(path=screenshot_dir / f"task-phone-{width}-tray.png")
        # Every slot within the screen, none clipped by a region that scrolls sideways.
        slots = page.eval_on_selector_all(
            "#ranking .rank-slot",
            """slots => slots.map(s => { const r = s.getBoundingClientRect();
                                      return [r.left, r.right, r.top, r.bottom]; })""",
        )
        assert len(slots) == 9
        found["slots off screen"] = [
            s for s in slots if s[0] < 0 or s[1] > width or s[2] < 0 or s[3] > 780
        ]
        found["tray scrolls sideways"] = page.eval_on_selector(
            "#ranking", "r => r.scrollWidth > r.clientWidth ? [r.scrollWidth, r.clientWidth] : []"
        )
        # The tray grew: the last image can still be scrolled clear of it.
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        last, tray_top = page.evaluate(
            """() => [document.querySelector('.tile:last-child').getBoundingClientRect().bottom,
                      document.querySelector('#tray').getBoundingClientRect().top]"""
        )
        assert last <= tray_top
        page.click(".tile:nth-child(2) .tile-zoom")
        page.wait_for_selector("#viewer[open]")
        found["viewer"] = serious_axe_violations(page)
        assert {state: v for state, v in found.items() if v} == {}
        assert page.get_attribute("#viewer-close", "aria-label") is None
        assert errors == []
    finally:
        context.close()


def test_focus_stays_above_the_tray_and_the_viewer_fills_the_screen(server, device, screenshot_dir):
    name, context = device
    campaign = server.open_round(name="Focus", prompt="a focused fig", lease_s=600, m=8)
    link, _token = own_link(server, campaign["id"])
    page, errors = open_page(context, link)
    shown_task(page)
    # Tab through every tile: each focused one is fully above the fixed tray.
    hidden = []
    for _ in range(2 * len(tile_ids(page))):
        page.keyboard.press("Tab")
        box = page.evaluate(
            """() => { const f = document.activeElement;
                       if (!f.classList.contains('tile-pick')) return null;
                       return [f.getBoundingClientRect().bottom,
                               document.querySelector('#tray').getBoundingClientRect().top]; }"""
        )
        if box and box[0] > box[1]:
            hidden.append(box)
    assert hidden == []
    page.screenshot(path=screenshot_dir / f"task-{name}-focus.png")
    # The test's images are 4 px wide: the viewer still shows them as large as the screen.
    page.click(".tile:nth-child(2) .tile-zoom")
    page.wait_for_selector("#viewer[open]")
    shown = page.eval_on_selector("#viewer-img", "img => img.getBoundingClientRect().width")
    screen = page.viewport_size
    assert shown >= 0.8 * min(screen["width"], screen["height"] - 160)
    page.screenshot(path=screenshot_dir / f"task-{name}-viewer.png")
    assert errors == []


def test_on_a_phone_the_first_images_show_without_scrolling(server, browser, screenshot_dir):
    context = browser.new_context(**VIEWPORTS["phone"])
    try:
        # A prompt of two lines on a phone, as real prompts often are, and ties (the longest
        # instructions).
        prompt = "a ripe plum on a blue ceramic plate, soft morning light from a window"
        campaign = server.open_round(name="First screen", prompt=prompt, allow_ties=True)
        link, _token = own_link(server, campaign["id"])
        page, errors = open_page(context, link)
        shown_task(page)
        tops = page.evaluate(
            """() => Object.fromEntries(['#prompt', '#instructions', '#grid > :first-child']
                   .map(s => [s, document.querySelector(s).getBoundingClientRect()])
                   .map(([s, r]) => [s, {top: r.top, height: r.height}]))"""
        )
        page.screenshot(path=screenshot_dir / "task-phone-first-screen.png")
    finally:
        context.close()
    tile = tops["#grid > :first-child"]["top"]
    print(f"\nfirst tile's top on a 390x844 phone: {tile:.0f} px")
    # The prompt and the instructions are still there, above the images...
    assert tops["#prompt"]["height"] > 0 and tops["#instructions"]["height"] > 0
    assert tops["#instructions"]["top"] < tile
    # ...and the first row of images starts in the top half of the screen.
    assert tile < VIEWPORTS["phone"]["viewport"]["height"] / 2
    assert errors == []


PROLIFIC = "https://app.prolific.com/submissions/complete?cc=DONE2024"


def test_a_finished_participant_is_sent_to_the_completion_url(server, device, screenshot_dir):
    name, context = device
    campaign = server.open_round(name="Prolific", prompt="a prolific pear", recruit=True,
                                 tasks_per_annotator=1, completion_url=PROLIFIC)  # fmt: skip
    arrived: list[str] = []

    def platform(route):  # Prolific's page, as far as this test needs it
        arrived.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<h1>Prolific</h1>")

    context.route("https://app.prolific.com/**", platform)
    join = f"{server.base_url}/join/{campaign['id']}?PROLIFIC_PID=pp1&STUDY_ID=st&SESSION_ID=se"
    page, errors = open_page(context, join)
    shown_task(page)
    for tile in range(5):
        tap(page, name, page.locator(".tile-pick").nth(tile))
    page.click("#submit")
    # The code and a link stay on the page until the browser leaves it.
    page.wait_for_selector("#completion-link:not([hidden])", timeout=WAIT_MS)
    assert page.text_content("#completion-code") == "DONE2024"
    assert page.get_attribute("#completion-link", "href") == PROLIFIC
    page.screenshot(path=screenshot_dir / f"task-{name}-completion-redirect.png")
    page.wait_for_url(PROLIFIC, timeout=WAIT_MS)
    assert arrived == [PROLIFIC] and errors == []
    annotators = server.owner.get(f"/api/campaigns/{campaign['id']}/annotators").json
    (joined,) = annotators["annotators"]
    detail = server.owner.get(f"/api/campaigns/{campaign['id']}/annotators/{joined['id']}").json
    assert detail["participant_context"] == {"study_id": "st", "session_id": "se"}


@pytest.mark.parametrize(("locale", "title"), [("de-DE", "Diese Studie ist voll"),
                                               ("en-US", "This study is full")])  # fmt: skip
def test_a_join_refusal_is_a_page_in_the_workers_language(
    server, browser, screenshot_dir, locale, title
):
    context = browser.new_context(**VIEWPORTS["phone"], locale=locale)
    try:
        campaign = server.open_round(name="Full", prompt="a full fig", recruit=True, recruit_cap=0)
        page = context.new_page()
        response = page.goto(f"{server.base_url}/join/{campaign['id']}?PROLIFIC_PID=late")
        assert response.status == 409 and page.text_content("h1") == title
        assert page.get_attribute("html", "lang") == locale[:2]
        assert axe_violations(page) == []
        page.screenshot(path=screenshot_dir / f"join-full-{locale}.png")
    finally:
        context.close()
