"""The owner console in headless Chromium: create a campaign from the form (the API's 422
messages next to their fields), duplicate one with an estimate from its history, drill into a
round, revoke an annotator, a stopped campaign's last round, another owner's campaign; axe-core
finds nothing on the pages.

The coordinator serves over HTTP from a thread on a SQLite database of the test's own; rounds
are rendered in process (``render_round``), as in ``tests/test_ui_failure_paths.py``.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from service import db
from service.auth import hash_token, new_token
from service.models import OwnerKey
from tests import test_ui_failure_paths as failure_paths
from tests.fixtures.coordinator import ADMIN, bearer, render_round
from tests.test_ui_failure_paths import HTTP_TIMEOUT_S, WAIT_MS, Server
from tests.test_ui_task_page import axe_violations

server = failure_paths.server  # the coordinator over HTTP

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@contextlib.contextmanager
def desktop_tab(browser) -> Iterator[tuple[Any, list[str]]]:
    """A desktop tab, and the script errors it raised."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page, errors
    finally:
        context.close()


@pytest.fixture
def tab(browser) -> Iterator[tuple[Any, list[str]]]:
    with desktop_tab(browser) as opened:
        yield opened


def sign_in(page, url: str, key: str = ADMIN) -> None:
    page.goto(url)
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#owner-key", key)
    page.click("#login-form button[type=submit]")


def annotators(server: Server, campaign_id: str, count: int) -> list[tuple[str, str]]:
    response = server.owner.post(f"/api/campaigns/{campaign_id}/annotators", json={"count": count})
    assert response.status_code == 201
    return [(a["id"], a["token"]) for a in response.json["annotators"]]


def rank(server: Server, token: str, reverse: bool = False) -> None:
    task = server.next_task(token)
    order = [image["id"] for image in task["images"]]
    sent = requests.post(
        f"{server.base_url}/api/tasks/{task['task_id']}/ranking",
        json={"order": order[::-1] if reverse else order},
        headers=bearer(token),
        timeout=HTTP_TIMEOUT_S,
    )
    assert sent.status_code == 201, sent.text


def error_of(page, field: str) -> str:
    page.wait_for_selector(f"#e-{field}:not([hidden])", timeout=WAIT_MS)
    return page.text_content(f"#e-{field}")


def submit(page) -> None:
    page.click("#create-form button[type=submit]")


# ------------------------------------------------------------------------------- tests


def test_create_a_campaign_from_the_form(server, tab, screenshot_dir):
    page, errors = tab
    page.goto(f"{server.base_url}/dashboard")
    page.wait_for_selector("#login:not([hidden])")
    assert axe_violations(page) == []  # the key prompt
    sign_in(page, f"{server.base_url}/dashboard")
    page.wait_for_selector("#create[open]")  # no campaign yet: the form is open
    empty = page.text_content("#campaigns-empty")
    assert "rankloop campaign create" not in empty and "form" in empty
    # The form holds the API's defaults, from its document.
    assert page.input_value("#f-m") == "8" and page.input_value("#f-rounds") == "10"
    assert page.eval_on_selector("#f-m", "e => [e.min, e.max]") == ["2", "32"]

    # The API's messages appear next to their fields.
    page.fill("#f-m", "0")
    submit(page)
    assert "at least 1 character" in error_of(page, "prompt")
    assert "greater than or equal to 2" in error_of(page, "m")
    assert page.get_attribute("#f-prompt", "aria-invalid") == "true"
    page.fill("#f-prompt", "a lighthouse at dusk")
    page.fill("#f-m", "4")
    page.fill("#f-k", "6")  # a rule between two fields: said above the button
    submit(page)
    page.wait_for_function(
        "() => document.querySelector('#create-error').textContent.includes('k=6 exceeds m=4')"
    )
    assert page.is_hidden("#e-prompt")
    page.click("#create .advanced summary")
    page.fill("#f-k", "2")
    page.fill("#f-optimizer", '{"step": -1}')
    submit(page)
    assert "step" in error_of(page, "optimizer")
    page.screenshot(path=screenshot_dir / "console-create-errors.png", full_page=True)
    assert axe_violations(page) == []

    # Every setting goes through: the estimate follows the form.
    page.fill("#f-optimizer", '{"step": 0.5}')
    page.fill("#f-name", "Lighthouse")
    page.fill("#f-negative_prompt", "blurry")
    page.select_option("#f-generator", "cppn")
    page.fill("#f-annotators_per_round", "2")
    page.fill("#f-rounds", "3")
    page.fill("#f-lease_s", "120")
    page.fill("#f-tasks_per_annotator", "4")
    page.check("#f-allow_ties")
    page.uncheck("#f-attention_check")
    page.check("#f-recruit")
    page.fill("#f-recruit_cap", "5")
    # The completion fields, checked by the API's rules: an http URL is refused at its field.
    page.fill("#f-completion_code", "C0DE42")
    page.fill("#f-completion_url", "http://app.prolific.com/submissions/complete?cc=C0DE42")
    submit(page)
    assert "https" in error_of(page, "completion_url") or "pattern" in error_of(
        page, "completion_url"
    )
    page.fill("#f-completion_url", "https://app.prolific.com/submissions/complete?cc=C0DE42")
    page.select_option("#f-consensus_method", "borda")
    page.fill("#f-seed", "7")
    assert page.text_content("#estimate div:first-child dd") == "6"  # 3 rounds × 2
    page.check("#f-start")
    submit(page)
    page.wait_for_url("**/dashboard/*", timeout=WAIT_MS)
    page.wait_for_selector("#campaign:not([hidden])", timeout=WAIT_MS)
    campaign_id = page.url.rsplit("/", 1)[1]
    created = server.owner.get(f"/api/campaigns/{campaign_id}").json
    assert created["status"] == "running" and created["name"] == "Lighthouse"
    settings = created["settings"]
    assert {name: settings[name] for name in (
        "negative_prompt", "m", "k", "annotators_per_round", "rounds", "lease_s",
        "tasks_per_annotator", "allow_ties", "attention_check", "recruit", "recruit_cap",
        "consensus_method", "seed")} == {
        "negative_prompt": "blurry", "m": 4, "k": 2, "annotators_per_round": 2, "rounds": 3,
        "lease_s": 120, "tasks_per_annotator": 4, "allow_ties": True, "attention_check": False,
        "recruit": True, "recruit_cap": 5, "consensus_method": "borda", "seed": 7,
    }  # fmt: skip
    assert settings["optimizer"]["step"] == 0.5
    # The created campaign hands out the owner's code and sends a finished participant on.
    assert created["completion_code"] == "C0DE42"
    recruit = server.owner.get(f"/api/campaigns/{campaign_id}/recruit").json
    assert recruit["completion_code"] == "C0DE42"
    assert recruit["completion_url"] == "https://app.prolific.com/submissions/complete?cc=C0DE42"
    assert errors == []


def test_create_an_adaptive_campaign_from_the_form(server, tab):
    """The quorum settings (issue 24) go through the form: the choice and the limits from the
    API's document, the rule between two fields said above the button."""
    page, errors = tab
    sign_in(page, f"{server.base_url}/dashboard")
    page.wait_for_selector("#create[open]")
    options = page.eval_on_selector_all("#f-quorum option", "nodes => nodes.map(n => n.value)")
    assert options == ["fixed", "adaptive"] and page.input_value("#f-quorum") == "fixed"
    assert page.input_value("#f-min_annotators_per_round") == "2"
    assert page.input_value("#f-settle_confidence") == "0.9"
    assert page.input_value("#f-straggler_after") == ""  # never offered
    assert page.eval_on_selector("#f-settle_confidence", "e => [e.min, e.step]") == ["0.5", "any"]
    page.fill("#f-prompt", "a lighthouse at dusk")
    page.select_option("#f-generator", "cppn")
    page.select_option("#f-quorum", "adaptive")
    page.fill("#f-annotators_per_round", "3")
    page.fill("#f-min_annotators_per_round", "4")  # above the cap: the API says so
    submit(page)
    page.wait_for_function(
        "() => document.querySelector('#create-error').textContent"
        ".includes('must not exceed annotators_per_round')",
        timeout=WAIT_MS,
    )
    page.fill("#f-settle_confidence", "0.4")
    submit(page)
    assert "greater than or equal to 0.5" in error_of(page, "settle_confidence")
    page.fill("#f-settle_confidence", "0.95")
    page.fill("#f-min_annotators_per_round", "2")
    page.fill("#f-annotators_per_round", "5")
    page.fill("#f-straggler_after", "1.5")
    submit(page)
    page.wait_for_url("**/dashboard/*", timeout=WAIT_MS)
    campaign_id = page.url.rsplit("/", 1)[1]
    settings = server.owner.get(f"/api/campaigns/{campaign_id}").json["settings"]
    assert {name: settings[name] for name in (
        "quorum", "min_annotators_per_round", "annotators_per_round", "settle_confidence",
        "straggler_after")} == {
        "quorum": "adaptive", "min_annotators_per_round": 2, "annotators_per_round": 5,
        "settle_confidence": 0.95, "straggler_after": 1.5,
    }  # fmt: skip
    assert errors == []


def test_duplicate_a_campaign_with_an_estimate_from_its_history(server, tab):
    page, errors = tab
    source = server.open_round(name="Apples", annotators_per_round=2, k=3, allow_ties=True)
    cid = source["id"]
    (_, a), (_, b) = annotators(server, cid, 2)
    rank(server, a)
    rank(server, b)
    render_round(server.app, cid, 1)
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("#campaign:not([hidden])", timeout=WAIT_MS)
    page.click("#duplicate")
    page.wait_for_selector("#create[open]", timeout=WAIT_MS)
    assert page.input_value("#f-prompt") == source["prompt"]
    assert page.input_value("#f-name") == "Apples (copy)"
    assert [page.input_value(f"#f-{n}") for n in ("m", "k", "annotators_per_round")] == [
        "4", "3", "2"
    ]  # fmt: skip
    assert page.is_checked("#f-allow_ties") and not page.is_checked("#f-start")
    assert "Apples" in page.text_content("#create-source")
    # Money too: annotator time per ranking (measured here: the source's two rankings are too
    # few, so the stated default) × rankings × the pay per hour.
    page.wait_for_function(
        "() => document.querySelector('#estimate div:last-child dd').textContent !== '—'",
        timeout=WAIT_MS,
    )
    values = page.eval_on_selector_all("#estimate dd", "nodes => nodes.map(n => n.textContent)")
    assert values[0] == "6"  # 3 rounds × 2
    assert "—" not in values[1:]  # measured on the source's closed round and renders
    estimate = server.owner.get("/api/estimate?m=4&k=3").json
    assert not estimate["measured"] and page.input_value("#pay-per-hour") == "12"
    assert values[-1] == f"{6 * estimate['seconds_per_ranking'] / 3600 * 12:.2f}"
    assert "stated default" in page.text_content("#cost-hint")
    assert errors == []


def test_drill_into_a_round_and_revoke_an_annotator(server, tab, screenshot_dir):
    page, errors = tab
    campaign = server.open_round(annotators_per_round=2, tasks_per_annotator=5)
    cid = campaign["id"]
    (_, a), (revoked, b) = annotators(server, cid, 2)
    rank(server, a)
    rank(server, b, reverse=True)
    render_round(server.app, cid, 1)
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("#detail-card:not([hidden])", timeout=WAIT_MS)
    page.select_option("#round-pick", "0")
    page.wait_for_selector("#detail-rankings tr.consensus", timeout=WAIT_MS)
    rows = page.locator("#detail-rankings tbody tr")
    assert rows.count() == 3  # the consensus, then each ranking
    # Each row holds the round's five images (four candidates and the attention check).
    for i in range(3):
        assert rows.nth(i).locator("figure").count() == 5
    # Side by side, each row shows its order as the API stores it, best first.
    detail = server.owner.get(f"/api/campaigns/{cid}/rounds/0").json
    shown = [
        rows.nth(i).locator("figure").evaluate_all("n => n.map(x => x.dataset.imageId)")
        for i in range(3)
    ]
    assert shown == [detail["consensus"]["order"], *(r["order"] for r in detail["rankings"])]
    assert shown[1] != shown[2]  # the second annotator ranked the other way round
    checks = page.locator("#detail-rankings tbody tr td:nth-child(3)").all_text_contents()
    assert checks[0] == "—" and set(checks[1:]) <= {"passed", "failed"}
    stats = page.locator("#detail-stats dt").all_text_contents()
    assert "Next step length" in stats and "Agreement" in stats
    # No raw optimizer key: what moved, by how much and why, in words.
    assert not [name for name in stats if "_" in name], stats
    assert page.text_content("#detail-why").startswith("The first round")
    assert page.locator("#detail-legend img").count() == 5
    assert axe_violations(page) == []

    # Revoke the second annotator, leaving their rankings out of later consensus.
    page.check("#revoke-exclude")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"#annotators tr[data-annotator-id='{revoked}'] button.btn-danger")
    page.wait_for_function(
        "id => document.querySelector(`#annotators tr[data-annotator-id='${id}']`)"
        ".textContent.includes('revoked, excluded')",
        arg=revoked,
        timeout=WAIT_MS,
    )
    me = requests.get(f"{server.base_url}/api/me", headers=bearer(b), timeout=HTTP_TIMEOUT_S)
    assert me.status_code == 401
    # Their own view: progress, access, each ranking with its time on task and weight.
    page.click(f"#annotators tr[data-annotator-id='{revoked}'] .link-button")
    page.wait_for_selector("#annotator-card:not([hidden])", timeout=WAIT_MS)
    stats = dict(
        zip(
            page.locator("#annotator-stats dt").all_text_contents(),
            page.locator("#annotator-stats dd").all_text_contents(),
            strict=True,
        )
    )
    assert stats["Tasks done"] == "1 / 5" and stats["Access"] == "revoked, excluded"
    assert page.locator("#annotator-rankings tbody tr").count() == 1
    assert page.locator("#plot-annotator-weight circle").count() == 1
    page.screenshot(path=screenshot_dir / "console-round-detail.png", full_page=True)
    assert axe_violations(page) == []
    assert errors == []


def test_a_stopped_campaign_never_shows_its_last_round_open(server, tab):
    page, errors = tab
    cid = server.open_round()["id"]
    assert server.owner.post(f"/api/campaigns/{cid}/stop").status_code == 200
    assert server.owner.get(f"/api/campaigns/{cid}").json["current_round"]["status"] == "open"
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("#campaign:not([hidden])", timeout=WAIT_MS)
    assert page.text_content("#round-title") == "Last round"
    shown = page.locator("#round-stats dd").all_text_contents()
    assert "ended (campaign stopped)" in shown and "open" not in shown
    assert "(open)" not in page.text_content("#round-pick")
    assert axe_violations(page) == []
    assert errors == []


def test_another_owners_campaign_keeps_the_key_in_the_tab(server, tab):
    page, _ = tab
    theirs = server.open_round()["id"]
    key = new_token()
    with server.app.app_context(), db.session_scope() as session:
        session.add(OwnerKey(name="lab b", key_hash=hash_token(key)))
        session.commit()
    own = requests.post(
        f"{server.base_url}/api/campaigns", json={"prompt": "a pear"}, headers=bearer(key),
        timeout=HTTP_TIMEOUT_S,
    ).json()  # fmt: skip
    sign_in(page, f"{server.base_url}/dashboard/{theirs}", key)
    page.wait_for_selector("#error:not([hidden])", timeout=WAIT_MS)
    assert "another owner" in page.text_content("#error")
    assert page.is_hidden("#login")
    assert page.evaluate("sessionStorage.getItem('rankloop.ownerKey')") == key
    page.goto(f"{server.base_url}/dashboard")  # the key still opens the owner's own list
    page.wait_for_selector(f"#campaigns a[href$='{own['id']}']", timeout=WAIT_MS)
    assert page.is_hidden("#login")


def test_the_page_follows_the_rounds_without_reloading_and_downloads_the_images(server, tab):
    page, errors = tab
    cid = server.open_round(annotators_per_round=1, rounds=3, tasks_per_annotator=5)["id"]
    ((_, token),) = annotators(server, cid, 1)
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("#strip figure.current img", timeout=WAIT_MS)
    page.evaluate("window.__sameDocument = 'never reloaded'")
    page.eval_on_selector("#strip figure.current img", "img => { img.__kept = true; }")

    for number in (0, 1):  # a round closes, the next one opens: the page follows by itself
        rank(server, token)
        render_round(server.app, cid, number + 1)
        page.wait_for_selector(f"#strip figure[data-round='{number}'] img", timeout=WAIT_MS)
        page.wait_for_function(
            "n => document.querySelector('#round-pick').options.length === n + 2",
            arg=number,
            timeout=WAIT_MS,
        )
        # The ranking's own event may have redrawn the page while the next round was still
        # rendering (its round listed, no image yet): wait for the redraw after the render,
        # whose image is the current best, before reading what the page shows.
        page.wait_for_function(
            "n => (document.querySelector('#strip figure.current img')?.getAttribute('src') || '')"
            ".includes(`/rounds/${String(n).padStart(4, '0')}/`)",
            arg=number + 1,
            timeout=WAIT_MS,
        )
        if number == 0:
            page.eval_on_selector(
                "#strip figure[data-round='0'] img", "img => { img.__kept = true; }"
            )
    # The images already shown are the same elements (never loaded again); the current best
    # moved on to the latest render.
    assert page.eval_on_selector("#strip figure[data-round='0'] img", "img => img.__kept")
    current = page.locator("#strip figure.current img")
    assert current.evaluate("img => img.__kept") and "/rounds/0002/" in current.get_attribute("src")
    assert page.evaluate("window.__sameDocument") == "never reloaded"
    assert page.input_value("#round-pick") == "2"  # following the latest round

    with page.expect_download() as download:
        page.click("#download-images")
    names = zipfile.ZipFile(download.value.path()).namelist()
    assert names == ["round-0000.png", "round-0001.png", "round-0002.png"]
    assert errors == []


def test_every_export_the_api_offers_downloads_from_the_page(server, tab):
    from service import datasets

    page, errors = tab
    cid = server.open_round(annotators_per_round=1)["id"]
    ((_, token),) = annotators(server, cid, 1)
    rank(server, token)
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("#export-form:not([hidden])", timeout=WAIT_MS)
    offered = page.eval_on_selector_all("#export-format option", "o => o.map(x => x.value)")
    tables = [f"{t}.{f}" for t in datasets.TABLES for f in datasets.FORMATS]
    assert offered == ["jsonl", *tables]
    assert page.is_disabled("#export-images")  # the original JSON lines have no image choice
    for fmt in offered:
        # Each download from a fresh load of the page: Chromium lets a page start one download
        # by itself, and more only within a click's activation, which a loaded machine's slow
        # export can outlast (the next would wait on a prompt nobody answers).
        page.reload()
        page.wait_for_selector("#export-form:not([hidden])", timeout=WAIT_MS)
        page.select_option("#export-format", fmt)
        # Image bytes go only into Parquet.
        embed = page.is_disabled("#export-images option[value=embed]")
        assert embed == (not fmt.endswith(".parquet"))
        if fmt.endswith(".parquet"):
            page.select_option("#export-images", "embed")
        with page.expect_download() as download:
            page.click("#export")
        data = Path(download.value.path()).read_bytes()
        assert download.value.suggested_filename == (
            f"rankloop-{cid}.jsonl" if fmt == "jsonl" else f"rankloop-{cid}-{fmt}"
        )
        assert data.startswith(b"PAR1") if fmt.endswith(".parquet") else data.startswith(b"{")
    assert axe_violations(page) == []
    assert errors == []


def test_preview_the_starting_image_from_the_form(server, tab):
    from gpu_worker.render import render_round as worker_render
    from tests.test_previews import queued

    page, errors = tab
    sign_in(page, f"{server.base_url}/dashboard")
    page.wait_for_selector("#create[open]")
    page.click("#preview")  # no prompt yet: refused as a campaign would be
    assert "at least 1 character" in error_of(page, "prompt")
    page.fill("#f-prompt", "a lighthouse at dusk")
    page.click("#create-form details.advanced summary")
    page.fill("#f-width", "64")
    page.fill("#f-height", "64")
    with page.expect_response(lambda r: r.url.endswith("/api/previews")) as asked:
        page.click("#preview")
    render_id = asked.value.json()["id"].split("-")[0]
    page.wait_for_function(
        "() => document.querySelector('#preview-status').textContent.startsWith('Rendering')",
        timeout=WAIT_MS,
    )
    # A render worker takes the message off the queue and renders it, as for a round.
    message = queued(server.app, render_id)
    store = server.app.extensions["rankloop_store"]
    worker_render(store, message["campaign_id"], 0, message["settings"], None, None)
    page.wait_for_selector("#preview-figure:not([hidden])", timeout=WAIT_MS)
    page.wait_for_function(
        "() => document.querySelector('#preview-image').naturalWidth === 64", timeout=WAIT_MS
    )
    assert "Rendered in" in page.text_content("#preview-status")
    values = page.eval_on_selector_all("#estimate dd", "nodes => nodes.map(n => n.textContent)")
    assert values[2] != "—"  # render time per round, from the preview
    assert axe_violations(page) == []
    assert errors == []


def test_the_recruit_panel_shows_cap_joined_owner_links_and_completion(server, tab):
    page, errors = tab
    url = "https://app.prolific.com/submissions/complete?cc=PLUM42"
    cid = server.open_round(recruit=True, recruit_cap=3, completion_url=url)["id"]
    joined = server.app.test_client().get(f"/join/{cid}?PROLIFIC_PID=p1&STUDY_ID=s")
    assert joined.status_code == 302
    annotators(server, cid, 2)  # made by hand: apart from the cap
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("#recruit-stats:not([hidden])", timeout=WAIT_MS)
    shown = dict(
        zip(
            page.locator("#recruit-stats dt").all_text_contents(),
            page.locator("#recruit-stats dd").all_text_contents(),
            strict=True,
        )
    )
    assert shown == {
        "Recruitment cap": "3",
        "Joined through the link": "1",
        "Links made by hand": "2",
        "Completion code": "PLUM42",
        "Completion URL": url,
    }
    assert page.is_visible("#recruit-url")
    assert axe_violations(page) == []
    assert errors == []


def test_the_crowds_verdict_leads_the_campaign_page(server, tab, screenshot_dir):
    page, errors = tab
    cid = server.open_round(rounds=2, verdict=True, tasks_per_annotator=5)["id"]
    ((_, token),) = annotators(server, cid, 1)
    rank(server, token)
    render_round(server.app, cid, 1)
    rank(server, token)
    rank(server, token)  # the verdict round: the delivered image against the start
    shown = server.owner.get(f"/api/campaigns/{cid}").json
    assert shown["status"] == "finished" and shown["verdict"]["n"] == 1
    sign_in(page, f"{server.base_url}/dashboard/{cid}")
    page.wait_for_selector("#verdict-card:not([hidden])", timeout=WAIT_MS)
    assert page.text_content("#verdict-summary") == shown["verdict"]["summary"]
    assert page.locator("#verdict-figure .verdict-bar").count() == 1
    # The verdict comes before everything else the page shows of the campaign.
    order = page.eval_on_selector_all(
        "#campaign > section", "nodes => nodes.map(n => n.id || n.getAttribute('aria-labelledby'))"
    )
    assert order[:2] == ["", "verdict-card"] or order[1] == "verdict-card", order
    # The improvement curve, with its interval as a band, from the rankings already given.
    page.wait_for_selector("#plot-improvement path.band", state="attached", timeout=WAIT_MS)
    assert page.locator("#plot-improvement circle").count() == 2  # rounds 0 and 1
    page.screenshot(path=screenshot_dir / "console-verdict.png", full_page=True)
    assert axe_violations(page) == []
    page.click("#verdict-ask")
    page.wait_for_function(
        "() => document.querySelector('#verdict-hint').textContent.includes('collecting')",
        timeout=WAIT_MS,
    )
    assert server.owner.get(f"/api/campaigns/{cid}/verdict").json["open"]
    assert page.is_disabled("#verdict-ask")
    assert errors == []
