"""The documentation: a reference generated from the code, with nothing missing; the site built
strictly (broken internal links fail it); the Quickstart's commands and the Diffusion-DPO
snippet run as the pages write them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from rankloop.commands import reference
from rankloop.core.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", page.read_text(), re.M | re.S)


def test_every_setting_says_what_it_does_and_who_reads_it():
    for name, field in Settings.model_fields.items():
        assert field.description, f"{env_name(name)} has no description"
        extra = field.json_schema_extra
        assert isinstance(extra, dict) and extra.get("read_by"), f"{env_name(name)}: read by?"


def test_every_campaign_field_says_what_it_sets():
    from service.schemas import CampaignCreate

    for name, field in CampaignCreate.model_fields.items():
        assert field.description, f"campaign field {name} has no description"


def test_the_reference_names_every_setting_field_command_and_endpoint():
    from service.datasets.rows import TABLES
    from service.schemas import CampaignCreate

    settings = reference.settings_reference()
    assert all(f"`{env_name(name)}`" in settings for name in Settings.model_fields)
    campaign = reference.campaign_reference()
    assert all(f"`{name}`" in campaign for name in CampaignCreate.model_fields)
    cli = reference.cli_reference()
    for command in ("rankloop up", "rankloop serve", "rankloop db upgrade", "rankloop export",
                    "rankloop bench api", "rankloop report"):  # fmt: skip
        assert f"### `{command}`" in cli
    api = reference.api_reference()
    for path, methods in reference.openapi_document()["paths"].items():
        assert all(f"### `{method.upper()} {path}`" in api for method in methods)
    datasets = reference.datasets_reference()
    assert all(f"### `{table}`" in datasets for table in TABLES)
    assert "| `jpg_0` | `binary` |" in datasets


def test_every_reference_page_is_generated():
    for name in ("settings", "campaign", "api", "cli", "datasets"):
        page = (DOCS / "reference" / f"{name}.md").read_text()
        assert f"<!-- generated: {name} -->" in page, name
    with pytest.raises(KeyError):
        reference.fill("<!-- generated: nothing -->")


@pytest.mark.slow  # a whole site (about half a minute on a loaded machine)
@pytest.mark.timeout(300)
def test_the_site_builds_strictly_with_every_setting(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    page = (site / "reference" / "settings.html").read_text()  # (offline: no directory URLs)
    assert all(env_name(name) in page for name in Settings.model_fields)
    assert (site / "reference" / "openapi.json").stat().st_size > 10_000
    assert "rankloop db upgrade" in (site / "reference" / "cli.html").read_text()


def _demo(port: int, key: str) -> str:
    listed = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/campaigns", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(listed, timeout=30) as response:
        return json.load(response)["campaigns"][0]["id"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # rankloop up with its worker processes
@pytest.mark.timeout(300)
def test_the_quickstart_runs_as_written(tmp_path):
    """The Quickstart's API block, word for word, against a fresh ``rankloop up``."""
    (block,) = [b for b in _blocks(DOCS / "quickstart.md", "bash") if "api/campaigns" in b]
    first, rest = block.split("\n", 1)
    assert first == "export BASE=http://127.0.0.1:8000 KEY=paste-the-owner-key-here"
    port, key = _free_port(), "quickstart-owner-key"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKLOOP_")}
    env["RANKLOOP_ADMIN_TOKEN"] = key
    env["RANKLOOP_BASE_URL"] = "https://study.example.org"  # as behind the guide's proxy
    up = subprocess.Popen(
        [str(Path(sys.executable).parent / "rankloop"), "up", "--var", str(tmp_path / "var"),
         "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        for line in up.stdout:  # up says so once it serves
            if line.startswith("rankloop is up at"):
                break
        else:
            pytest.fail("rankloop up ended before it served")
        script = f"set -euo pipefail\nexport BASE=http://127.0.0.1:{port} KEY={key}\n{rest}"
        ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=200)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert '"ranking_id"' in ran.stdout and '"rounds_done"' in ran.stdout
        made = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/campaigns/{_demo(port, key)}/annotators",
            data=json.dumps({"count": 1}).encode(), method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(made, timeout=30) as response:
            (annotator,) = json.load(response)["annotators"]
        assert annotator["link"].startswith("https://study.example.org/task#token=")
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


@pytest.mark.slow  # imports torch and datasets
@pytest.mark.timeout(300)
def test_the_diffusion_dpo_snippet_loads_a_pairs_export(sqlite_app, tmp_path):
    """The training guide's data-loading snippet, as written, on a real ``pairs`` export."""
    from sqlalchemy import select

    from service import db
    from service.models import Image
    from tests.fixtures.coordinator import Owner, bearer, render_round

    owner = Owner(sqlite_app.test_client())
    created = owner.campaign(start=True, m=4, annotators_per_round=2, rounds=1)
    client = sqlite_app.test_client()
    rendered = render_round(sqlite_app, created["id"], 0, m=4)
    attention = {i["key"] for i in rendered["images"] if i["role"] == "attention"}
    with db.session_scope(sqlite_app) as session:
        attention = set(session.scalars(select(Image.id).where(Image.key.in_(attention))))
    for token in owner.annotators(created["id"], 2):
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        ids = [image["id"] for image in task["images"]]
        order = [*(i for i in ids if i not in attention), *attention]  # the check passed
        ranked = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                             headers=bearer(token))  # fmt: skip
        assert ranked.status_code == 201, ranked.json
    export = owner.get(f"/api/campaigns/{created['id']}/export?format=pairs.parquet&images=embed")
    assert export.status_code == 200
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / f"pairs-{created['id']}.parquet").write_bytes(export.data)
    (snippet,) = [
        b for b in _blocks(DOCS / "guides" / "datasets.md", "python") if "DataLoader" in b
    ]
    check = "\nassert batch['pixel_values'].shape[1:] == (6, RESOLUTION, RESOLUTION), batch\n"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    ran = subprocess.run([sys.executable, "-c", snippet + check], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=280)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-4000:]


def test_the_readmes_links_lead_to_pages_that_exist():
    """The README is two screens that link into the site: every relative link names a file."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing
    assert len(readme.splitlines()) <= 120, "the README fits on two screens"
