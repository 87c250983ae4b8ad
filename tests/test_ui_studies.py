"""A study as a paid crowd worker meets it on a phone (390×844, touch), in headless Chromium:
the study's one link, a task of each of its prompts one after the other, then the study's
completion code and the redirect to the platform; and the owner's study pages load clean.
"""

from __future__ import annotations

import pytest

from tests import test_ui_failure_paths as failure_paths
from tests.fixtures.coordinator import ADMIN, render_round
from tests.test_ui_failure_paths import WAIT_MS, shown_task
from tests.test_ui_task_page import PROLIFIC, VIEWPORTS, axe_violations, open_page, tap

server = failure_paths.server  # the coordinator over HTTP, shared with the failure paths

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_phone_worker_ranks_across_the_study_and_is_sent_to_the_platform(
    server, browser, screenshot_dir
):
    body = {
        "name": "fruit",
        "prompts": ["a red apple", "a green pear"],
        "settings": {"m": 4, "annotators_per_round": 2, "rounds": 2, "tasks_per_annotator": 1},
        "recruit": True,
        "tasks_per_worker": 2,
        "completion_url": PROLIFIC,
        "start": True,
    }
    created = server.owner.post("/api/studies", json=body)
    assert created.status_code == 201, created.json
    study = created.json
    for campaign in study["campaigns"]:
        render_round(server.app, campaign["id"], 0, attention=False)
    context = browser.new_context(**VIEWPORTS["phone"])
    arrived: list[str] = []

    def platform(route):  # Prolific's page, as far as this test needs it
        arrived.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<h1>Prolific</h1>")

    context.route("https://app.prolific.com/**", platform)
    try:
        page, errors = open_page(
            context, f"{server.base_url}/join/study/{study['id']}?PROLIFIC_PID=pp1"
        )
        prompts = []
        task = shown_task(page)
        for n in range(2):
            if n:  # the next task, in the same page
                page.wait_for_function(
                    "previous => document.querySelector('#task').dataset.taskId !== previous",
                    arg=task,
                    timeout=WAIT_MS,
                )
                task = shown_task(page)
            prompts.append(page.text_content("#prompt"))
            for tile in range(4):
                tap(page, "phone", page.locator(".tile-pick").nth(tile))
            page.click("#submit")
        # One task of each prompt (the quota: 2), then the study's code and the platform.
        assert sorted(p.strip() for p in prompts) == ["a green pear", "a red apple"]
        page.wait_for_selector("#completion-link:not([hidden])", timeout=WAIT_MS)
        assert page.text_content("#completion-code") == "DONE2024"
        page.screenshot(path=screenshot_dir / "study-phone-completion-redirect.png")
        page.wait_for_url(PROLIFIC, timeout=WAIT_MS)
        assert arrived == [PROLIFIC] and errors == []
    finally:
        context.close()
    shown = server.owner.get(f"/api/studies/{study['id']}").json
    assert [c["rankings"] for c in shown["campaigns"]] == [1, 1]


def test_the_study_pages_show_the_study_and_its_prompts(server, browser, screenshot_dir):
    body = {"name": "fruit", "prompts": ["a red apple", "a green pear"], "settings": {"m": 4}}
    study = server.owner.post("/api/studies", json=body).json
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page, errors = open_page(context, f"{server.base_url}/dashboard/studies#key={ADMIN}")
        page.wait_for_selector("#studies:not([hidden]) a", timeout=WAIT_MS)
        page.click("#studies a")
        page.wait_for_selector("#prompts .study-tile", timeout=WAIT_MS)
        tiles = page.eval_on_selector_all(
            "#prompts .prompt", "nodes => nodes.map(n => n.textContent)"
        )
        assert tiles == ["a red apple", "a green pear"]
        assert page.text_content("#study-name") == "fruit"
        page.click("[data-action=start]")
        page.wait_for_function(
            "() => document.querySelector('#study-status').textContent === 'running'",
            timeout=WAIT_MS,
        )
        page.screenshot(path=screenshot_dir / "study-console.png")
        assert errors == []
    finally:
        context.close()
    assert server.owner.get(f"/api/studies/{study['id']}").json["status"] == "running"


def test_the_study_link_opened_again_continues_in_the_same_browser(server, browser):
    """A second visit through the study's link takes no identity: the page continues with the
    token this browser got on the first visit (kept under the study's id), on the same task."""
    body = {"prompts": ["a red apple"], "settings": {"m": 4}, "recruit": True, "start": True}
    study = server.owner.post("/api/studies", json=body).json
    render_round(server.app, study["campaigns"][0]["id"], 0, attention=False)
    context = browser.new_context(**VIEWPORTS["phone"])
    link = f"{server.base_url}/join/study/{study['id']}?PROLIFIC_PID=pp2"
    try:
        first, errors = open_page(context, link)
        task = shown_task(first)
        again, more_errors = open_page(context, link)
        assert shown_task(again) == task
        assert errors == [] and more_errors == []
    finally:
        context.close()
    assert server.owner.get(f"/api/studies/{study['id']}").json["workers"] == 1


def test_the_crowds_verdict_leads_the_study_page(server, browser, screenshot_dir):
    from service import db
    from tests.test_study_verdict import _answers, _ended

    settings = {"m": 4, "annotators_per_round": 9, "rounds": 3}
    body = {"name": "verdicts", "prompts": ["a plum", "a fig"], "settings": settings}
    study = server.owner.post("/api/studies", json=body).json
    plum, fig = (c["id"] for c in study["campaigns"])
    with server.app.app_context(), db.session_scope() as session:
        from service import verdicts

        for cid, delivered, start in ((plum, 6, 1), (fig, 2, 1)):
            _ended(session, cid)
            verdicts.request(session, cid)
            _answers(session, cid, delivered, start)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page, errors = open_page(
            context, f"{server.base_url}/dashboard/study/{study['id']}#key={ADMIN}"
        )
        page.wait_for_selector("#verdict-figure .verdict-bar", timeout=WAIT_MS)
        summary = page.text_content("#verdict-summary") or ""
        assert summary.startswith("80% of 10 answers prefer the delivered image")
        # The verdict comes before the progress card, and each prompt's tile has its own.
        cards = page.eval_on_selector_all("#study > section", "s => s.map(n => n.id || '')")
        assert cards.index("verdict-card") < 2
        lines = page.eval_on_selector_all(
            "#prompts .verdict-line", "nodes => nodes.map(n => n.textContent)"
        )
        assert lines[0].startswith("verdict 86% (") and lines[0].endswith("n=7)")
        page.screenshot(path=screenshot_dir / "study-verdict.png", full_page=True)
        assert errors == []
    finally:
        context.close()


SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
# The elements wider than the screen, innermost first: what makes a page scroll sideways.
WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter(n => n.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .filter(n => !n.closest('.table-wrap'))
  .reverse().slice(0, 5)
  .map(n => `${n.tagName}#${n.id}.${n.className} ${Math.round(n.getBoundingClientRect().right)}`)"""


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_the_study_page_at_a_glance_on_a_phone_and_a_desktop(
    server, browser, screenshot_dir, viewport
):
    """Progress, costs and the idle share, workers, and the sortable grid of best images, each
    tile a link into its campaign: nothing wider than the screen, and clean for axe-core."""
    from tests.test_studies import join, rank

    prompts = ["a red apple", "a green pear with a very long prompt that wraps", "a plum"]
    settings = {"m": 4, "annotators_per_round": 2, "rounds": 2, "tasks_per_annotator": 1}
    body = {"name": "fruit at a glance", "prompts": prompts, "settings": settings}
    body |= {"recruit": True, "tasks_per_worker": 3, "pay_per_hour": 12.0, "start": True}
    study = server.owner.post("/api/studies", json=body).json
    for campaign in study["campaigns"]:
        render_round(server.app, campaign["id"], 0, attention=False)
    token = join(server.app, study["id"], "pp-glance")
    assert rank(server.app, token) is not None and rank(server.app, token) is not None
    context = browser.new_context(**VIEWPORTS[viewport])
    try:
        listing, list_errors = open_page(
            context, f"{server.base_url}/dashboard/studies#key={ADMIN}"
        )
        listing.wait_for_selector("#studies:not([hidden]) a", timeout=WAIT_MS)
        listing.screenshot(path=screenshot_dir / f"studies-{viewport}.png", full_page=True)
        assert listing.evaluate(SIDEWAYS) <= 0, listing.evaluate(WIDEST)
        assert axe_violations(listing) == [] and list_errors == []
        page, errors = open_page(
            context, f"{server.base_url}/dashboard/study/{study['id']}#key={ADMIN}"
        )
        page.wait_for_selector("#prompts .study-tile img", timeout=WAIT_MS)
        page.wait_for_selector("#workers:not([hidden]) tbody tr", timeout=WAIT_MS)
        stats = page.eval_on_selector_all(
            "#study-stats dt", "nodes => nodes.map(n => n.textContent)"
        )
        for label in (
            "Spent so far",
            "Estimate to finish",
            "Idle share",
            "Rankings in the last hour",
            "Rankings saved",
        ):
            assert label in stats
        idle = page.text_content("#study-stats div:has(dt:text-is('Idle share')) dd")
        assert idle is not None and idle.endswith("%")
        # Sorted by rankings, fewest first: the prompt nobody ranked yet leads.
        page.select_option("#sort", "rankings")
        lines = page.eval_on_selector_all(
            "#prompts .study-tile", "tiles => tiles.map(t => t.textContent)"
        )
        assert "0 rankings" in lines[0]
        hrefs = page.eval_on_selector_all(
            "#prompts .study-tile a", "links => links.map(a => a.getAttribute('href'))"
        )
        assert sorted(h.rsplit("/", 1)[1] for h in hrefs) == sorted(
            c["id"] for c in study["campaigns"]
        )
        page.screenshot(path=screenshot_dir / f"study-glance-{viewport}.png", full_page=True)
        wide = page.evaluate(SIDEWAYS)
        assert wide <= 0, f"the page scrolls sideways by {wide}px: {page.evaluate(WIDEST)}"
        assert axe_violations(page) == []
        # The drill-down: the last tile (most rankings) opens its campaign, whose annotator
        # list has the study's worker, marked as such.
        page.locator("#prompts .study-tile a").last.click()
        page.wait_for_selector("#annotators:not([hidden]) tbody tr", timeout=WAIT_MS)
        row = page.text_content("#annotators tbody tr") or ""
        assert "pp-glance" in row and "study worker" in row
        # And it leads back to the study, whose link its workers join through.
        back = page.get_attribute("#campaign-study a", "href") or ""
        assert back.endswith(f"/dashboard/study/{study['id']}")
        page.wait_for_selector("#recruit:not([hidden]) #recruit-link a", timeout=WAIT_MS)
        annotators = page.locator("#annotators").locator("xpath=ancestor::section[1]")
        annotators.screenshot(path=screenshot_dir / f"study-campaign-annotators-{viewport}.png")
        assert errors == []
    finally:
        context.close()
