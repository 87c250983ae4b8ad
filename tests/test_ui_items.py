"""An image set's items in the owner console, in headless Chromium on a phone (390×844) and a
desktop: a zip with a malformed row is refused in words naming its line, checked again with the
malformed rows skipped (a preview of the first items with their images, the skipped row listed,
nothing kept), then imported, and the first items imported shown from the store; axe finds
nothing on the page.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests import test_ui_failure_paths as failure_paths
from tests.fixtures.coordinator import ADMIN
from tests.test_image_sets import MODELS, picture
from tests.test_ui_failure_paths import WAIT_MS
from tests.test_ui_task_page import VIEWPORTS, axe_violations, open_page

server = failure_paths.server  # the coordinator over HTTP

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROMPTS = ["a lighthouse at dawn", "a lighthouse in a storm, waves breaking on the rocks",
           "a lighthouse at night", "a lighthouse in fog", "a lighthouse from the sea"]  # fmt: skip


def items_zip(path: Path) -> Path:
    """Five good items as a table with its images, and a sixth whose image is missing."""
    rows = ["item_id,prompt,image_0,model_0,image_1,model_1,image_2,model_2"]
    with zipfile.ZipFile(path, "w") as archive:
        for i, prompt in enumerate(PROMPTS):
            cells = []
            for model in MODELS:
                archive.writestr(f"img/{model}-{i}.png", picture(model, i * 40))
                cells += [f"img/{model}-{i}.png", model]
            rows.append(",".join([f"house-{i}", f'"{prompt}"', *cells]))
        rows.append("house-5,a lighthouse lost,img/gone.png,good,img/good-0.png,fair,,")
        archive.writestr("items.csv", "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("device", list(VIEWPORTS))
def test_upload_check_and_import_items_from_the_console(server, browser, screenshot_dir,
                                                        tmp_path, device):  # fmt: skip
    campaign = server.owner.campaign(kind="image_set", prompt="which lighthouse is best")
    upload = items_zip(tmp_path / "lighthouses.zip")
    context = browser.new_context(**VIEWPORTS[device])
    try:
        page, errors = open_page(
            context, f"{server.base_url}/dashboard/{campaign['id']}#key={ADMIN}"
        )
        page.wait_for_selector("#items-form:not([hidden])", timeout=WAIT_MS)
        page.wait_for_function(
            "() => document.querySelector('#items-preview-title').textContent"
            " === 'No item imported yet'",
            timeout=WAIT_MS,
        )
        page.set_input_files("#items-file", str(upload))
        # All or nothing: the missing image refuses the file, in words, with its line.
        page.click("#items-check")
        page.wait_for_selector("#items-error:not([hidden])", timeout=WAIT_MS)
        assert "line 7, image_0: no file 'img/gone.png' in the zip" in page.text_content(
            "#items-error"
        )
        page.locator("#items-card").screenshot(path=screenshot_dir / f"items-{device}-refused.png")
        # Skipping: the first items previewed with their images, the bad row listed.
        page.check("#items-skip")
        page.click("#items-check")
        page.wait_for_selector("#items-preview .item-preview img", timeout=WAIT_MS)
        assert page.is_hidden("#items-error")
        assert "5 items, 15 images would be imported" in page.text_content("#items-status")
        prompts = page.eval_on_selector_all(
            "#items-preview .prompt", "nodes => nodes.map(n => n.textContent)"
        )
        assert prompts == PROMPTS[:4]
        assert page.locator("#items-preview .item-preview").first.locator("img").count() == 3
        assert page.text_content("#items-skipped tbody tr td:nth-child(2)") == "house-5"
        page.wait_for_function(
            "() => [...document.querySelectorAll('#items-preview img')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
            timeout=WAIT_MS,
        )
        page.locator("#items-card").screenshot(path=screenshot_dir / f"items-{device}-preview.png")
        assert server.owner.get(f"/api/campaigns/{campaign['id']}/items").json["items"] == []
        # Imported: the first items, now from the store.
        page.click("#items-import")
        page.wait_for_function(
            "() => document.querySelector('#items-preview-title').textContent"
            " === 'First items imported'",
            timeout=WAIT_MS,
        )
        assert "Imported 5 items, 15 images" in page.text_content("#items-status")
        page.wait_for_function(
            "() => { const imgs = [...document.querySelectorAll('#items-preview img')];"
            " return imgs.length === 12 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
            timeout=WAIT_MS,
        )
        page.locator("#items-card").screenshot(path=screenshot_dir / f"items-{device}-imported.png")
        assert axe_violations(page) == []
        assert errors == []
    finally:
        context.close()
    items = server.owner.get(f"/api/campaigns/{campaign['id']}/items").json["items"]
    assert [i["item_id"] for i in items] == [f"house-{i}" for i in range(5)]
