"""How long a crowd worker on a slow phone waits for the first task (issue 9): a phone viewport,
the CPU slowed 4× and the network at Chrome DevTools' "Fast 3G" preset, through the Chrome
DevTools Protocol. The figure is reported (printed, and written as JSON under
``$RANKLOOP_BENCH_OUT`` or the test's temporary folder), never asserted against a time: a
shared 2-core machine is no phone. What is asserted is behaviour: the task shows (thumbnails first,
then each image at full size), and the page reported its images' loading time, which extended
the lease by as much.

The round is rendered by the real CPU renderer (cppn) at the generator's default size, so the
bytes on the wire are those of a real round.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import test_ui_failure_paths as failure_paths
from tests.test_ui_failure_paths import WAIT_MS

server = failure_paths.server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Chrome DevTools' presets (front_end/core/sdk/NetworkManager.ts): Fast 3G is 1.6 Mbit/s down
# and 750 kbit/s up at 90 % goodput, and 150 ms latency times 3.75.
FAST_3G = {
    "offline": False,
    "latency": 562.5,
    "downloadThroughput": 1.6 * 1000 * 1000 / 8 * 0.9,  # 180 000 bytes/s
    "uploadThroughput": 750 * 1000 / 8 * 0.9,  # 84 375 bytes/s
}
CPU_SLOWDOWN = 4
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "has_touch": True,
    "is_mobile": True,
    "device_scale_factor": 2,
}
# When the task is first on screen, then with an image in every tile (a thumbnail at least), then
# with every image at full size: ms since navigation.
WATCH_FIRST_TASK = """
window.__firstLoad = {};
document.addEventListener('DOMContentLoaded', () => {
  const task = document.querySelector('#task');
  const look = () => {
    const tiles = [...task.querySelectorAll('.tile img')];
    if (task.hidden || !tiles.length) return;
    window.__firstLoad.task_visible_ms ??= performance.now();
    if (tiles.every(i => i.complete && i.naturalWidth)) window.__firstLoad.every_image_ms ??= performance.now();
    const sharp = tiles.every(i => i.dataset.sharp === 'true' && i.complete && i.naturalWidth);
    if (sharp && !window.__firstLoad.full_size_ms) window.__firstLoad.full_size_ms = performance.now();
  };
  new MutationObserver(look).observe(task, {attributes: true, subtree: true, childList: true});
  document.addEventListener('load', look, true);
});
"""


def render_for_real(app, campaign_id: str) -> None:
    """Render round 0 as a render worker would (the cppn generator, on the CPU)."""
    from gpu_worker.render import render_round
    from service.db import session_scope
    from service.models import Campaign
    from service.render_messages import render_message
    from service.rendering import round_rendered

    store = app.extensions["rankloop_store"]
    with app.app_context(), session_scope() as session:
        campaign = session.get(Campaign, campaign_id)
        message = render_message(campaign, campaign.rounds[0])
        result = render_round(store, campaign_id, 0, message.settings.model_dump())
        session.rollback()
        assert round_rendered(session, result)


def bench_out(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("RANKLOOP_BENCH_OUT") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_first_task_on_a_throttled_phone_over_fast_3g(server, browser, tmp_path, screenshot_dir):
    settings = {"name": "Slow phone", "prompt": "a plum on a slow phone", "m": 8,
                "annotators_per_round": 1, "rounds": 2, "start": True}  # fmt: skip
    campaign = server.owner.campaign(**settings)
    render_for_real(server.app, campaign["id"])
    token = server.owner.annotators(campaign["id"], 1)[0]
    context = browser.new_context(**PHONE)
    try:
        context.add_init_script(WATCH_FIRST_TASK)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})  # a first visit
        cdp.send("Network.emulateNetworkConditions", FAST_3G)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": CPU_SLOWDOWN})
        with page.expect_response(lambda r: r.url.endswith("/shown"), timeout=4 * WAIT_MS) as shown:
            page.goto(f"{server.base_url}/task#token={token}", timeout=4 * WAIT_MS)
            page.wait_for_function("() => window.__firstLoad.full_size_ms", timeout=4 * WAIT_MS)
        figures = page.evaluate(
            """() => ({
                ...window.__firstLoad,
                bytes: performance.getEntriesByType('navigation')
                    .concat(performance.getEntriesByType('resource'))
                    .reduce((sum, e) => sum + (e.transferSize || e.encodedBodySize || 0), 0),
                images: document.querySelectorAll('#grid .tile img').length,
                timeline: performance.getEntriesByType('resource').map(e => [
                    e.name.replace(location.origin, '').split('#')[0].slice(0, 60),
                    Math.round(e.startTime), Math.round(e.responseEnd)]),
            })"""
        )
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        page.screenshot(path=screenshot_dir / "task-phone-fast3g-first-load.png")
        assert shown.value.status == 200
        extended = shown.value.json()
    finally:
        context.close()

    task = server.next_task(token)
    assert task["expires_at"] == extended["expires_at"]
    lease_s = campaign["settings"]["lease_s"]
    created, ends = _lease_times(server.app, task["task_id"])
    assert (ends - created).total_seconds() > lease_s  # the loading time was given back

    report = {
        "what": "first task visible, phone 390x844, CPU 4x slower, Fast 3G (DevTools preset)",
        "network": FAST_3G,
        "cpu_slowdown": CPU_SLOWDOWN,
        "round": {
            "m": settings["m"],
            "width": campaign["settings"]["width"],
            "height": campaign["settings"]["height"],
        },
        "task_visible_s": round(figures["task_visible_ms"] / 1000, 2),
        "every_image_s": round(figures["every_image_ms"] / 1000, 2),
        "full_size_s": round(figures["full_size_ms"] / 1000, 2),
        "bytes": figures["bytes"],
        "images": figures["images"],
        "timeline_ms": figures["timeline"],  # each request: [path, start, end]
        "lease_extended_by_s": round((ends - created).total_seconds() - lease_s, 2),
        "target_s": 3.0,
    }
    path = bench_out(tmp_path) / "first_load_phone_fast3g.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfirst task on a throttled phone: {json.dumps(report)}\n(written to {path})")


def _lease_times(app, task_id: str):
    from service.db import session_scope
    from service.models import Assignment

    with app.app_context(), session_scope() as session:
        task = session.get(Assignment, task_id)
        return task.created_at, task.expires_at
