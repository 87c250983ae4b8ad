"""Image-set campaigns: the owner's own images, one round per item, no optimizer. Imports from
each source (a folder tree, a zip of folders, a zip of a table and its images, CSV, JSON lines,
Parquet with bytes or Hugging Face Image values), each malformed case refused with its line and
nothing created, and a campaign end to end over HTTP (PostgreSQL and SeaweedFS) with simulated
annotators, through to the exports' model columns and a dataset folder split by item prompt.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from PIL import Image as PILImage
from sqlalchemy import func, select

from rankloop.commands.import_images import import_images_command
from rankloop.core.image_sets import BLOB_KEY
from rankloop.core.settings import settings_of
from service import db
from service.image_sets import reading
from service.models import Campaign, Image, Round
from tests.fixtures.coordinator import Owner, bearer, make_app

MODELS = ("good", "fair", "poor")  # the simulated crowd prefers them in this order
SHADES = {"good": 40, "fair": 120, "poor": 200}


def picture(model: str, item: int, fmt: str = "PNG") -> bytes:
    """An image that differs per (model, item); the same arguments give the same bytes."""
    buffer = io.BytesIO()
    colour = (SHADES[model], (item * 37) % 256, 255 - SHADES[model])
    PILImage.new("RGB", (16, 16), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def folder_tree(root: Path, items: int = 3, shared: bool = False) -> Path:
    """``root/item-<i>/prompt.txt`` and ``<model>.png``; ``shared``: item 1's good image is
    item 0's (one file in the store for both)."""
    for i in range(items):
        folder = root / f"item-{i}"
        folder.mkdir(parents=True)
        (folder / "prompt.txt").write_text(f"a lighthouse, take {i}\n")
        for model in MODELS:
            same = shared and i == 1 and model == "good"
            (folder / f"{model}.png").write_bytes(picture(model, 0 if same else i))
    return root


def _database(app: Flask) -> str:
    return settings_of(app).database_url


def _import(app: Flask, source: Path, *args: str):
    return CliRunner().invoke(import_images_command, [
        str(source), "--url", _database(app), "--store", settings_of(app).store_url,
        "--set", "annotators_per_round=2", *args,
    ])  # fmt: skip


def _counts(app: Flask) -> tuple[int, int, int]:
    with db.session_scope(app) as session:
        return tuple(
            session.scalar(select(func.count()).select_from(t)) or 0
            for t in (Campaign, Round, Image)
        )  # type: ignore[return-value]


def _rounds(app: Flask, campaign_id: str) -> list[tuple[Round, list[Image]]]:
    with db.session_scope(app) as session:
        rounds = session.scalars(
            select(Round).where(Round.campaign_id == campaign_id).order_by(Round.number)
        ).all()
        found = [(r, list(r.images)) for r in rounds]
        session.expunge_all()
    return found


def test_folder_tree_import_stores_each_image_once(sqlite_app, tmp_path):
    app = sqlite_app
    result = _import(app, folder_tree(tmp_path / "set", shared=True), "--name", "lighthouses")
    assert result.exit_code == 0, result.output
    # 9 images and 3 attention images: 12 files, one of them twice.
    assert "imported 3 items (9 images; files: 11 stored, 1 already in the store)" in result.output
    with db.session_scope(app) as session:
        campaign = session.scalars(select(Campaign)).one()
        config, campaign_id, status = campaign.config, campaign.id, campaign.status
    assert config.kind == "image_set" and config.m == 3 and status == "draft"
    rounds = _rounds(app, campaign_id)
    assert [r.item_id for r, _ in rounds] == ["item-0", "item-1", "item-2"]
    assert [r.prompt for r, _ in rounds] == [f"a lighthouse, take {i}" for i in range(3)]
    store = app.extensions["rankloop_store"]
    for number, (round_, images) in enumerate(rounds):
        assert round_.status == "open" and round_.deadline is None and round_.state_key is None
        candidates = [i for i in images if i.role == "candidate"]
        assert [i.model for i in candidates] == sorted(MODELS)  # file order: fair, good, poor
        assert [i.role for i in images][-1] == "attention" and len(images) == 4
        for image in candidates:
            assert BLOB_KEY.match(image.key) and BLOB_KEY.match(image.thumb_key)
            expected = picture(image.model, 0 if (number, image.model) == (1, "good") else number)
            assert store.get(image.key) == expected
        attention = images[-1]
        assert attention.key.endswith(".png") and store.get(attention.key) not in {
            store.get(i.key) for i in candidates
        }
    assert rounds[0][1][1].key == rounds[1][1][1].key  # the shared image: one key


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _table_sources(tmp_path: Path) -> dict[str, Path]:
    """The same two items in every table layout."""
    images = tmp_path / "tables"
    (images / "img").mkdir(parents=True)
    for i in range(2):
        for model in MODELS:
            (images / "img" / f"{model}-{i}.png").write_bytes(picture(model, i))
    wide = [{"item_id": f"p{i}", "prompt": f"a fox {i}",
             **{f"image_{n}": f"img/{m}-{i}.png" for n, m in enumerate(MODELS)},
             **{f"model_{n}": m for n, m in enumerate(MODELS)}} for i in range(2)]  # fmt: skip
    header = list(wide[0])
    csv_path = images / "items.csv"
    csv_path.write_text(
        ",".join(header) + "\n" + "".join(",".join(r[h] for h in header) + "\n" for r in wide)
    )
    long = tmp_path / "long" / "items.jsonl"
    long.parent.mkdir()
    shutil.copytree(images / "img", long.parent / "img")
    long.write_text("".join(
        json.dumps({"item_id": f"p{i}", "prompt": f"a fox {i}", "image": f"img/{m}-{i}.png",
                    "model": m}) + "\n"
        for i in range(2) for m in MODELS
    ))  # fmt: skip
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({
        "prompt": [f"a fox {i}" for i in range(2)],
        **{f"image_{n}": [picture(m, i) for i in range(2)] for n, m in enumerate(MODELS)},
        **{f"model_{n}": [m, m] for n, m in enumerate(MODELS)},
    }), parquet)  # fmt: skip
    hf = tmp_path / "hf.parquet"  # datasets' Image feature: a struct of bytes and path
    pq.write_table(pa.table({
        "prompt": [f"a fox {i}" for i in range(2) for _ in MODELS],
        "item_id": [f"p{i}" for i in range(2) for _ in MODELS],
        "image": [{"bytes": picture(m, i), "path": None} for i in range(2) for m in MODELS],
        "model": [m for _ in range(2) for m in MODELS],
    }), hf)  # fmt: skip
    zipped_table = _zip(tmp_path / "table.zip", {
        "items.csv": csv_path.read_bytes(),
        **{f"img/{m}-{i}.png": picture(m, i) for i in range(2) for m in MODELS},
    })  # fmt: skip
    zipped_folders = _zip(tmp_path / "folders.zip", {
        **{f"set/p{i}/prompt.txt": f"a fox {i}".encode() for i in range(2)},
        **{f"set/p{i}/{m}.png": picture(m, i) for i in range(2) for m in MODELS},
    })  # fmt: skip
    return {"csv": csv_path, "jsonl": long, "parquet": parquet, "hf": hf,
            "zip-table": zipped_table, "zip-folders": zipped_folders}  # fmt: skip


def test_every_source_gives_the_same_items(tmp_path):
    sources = _table_sources(tmp_path)
    for name, path in sources.items():
        items = []
        for item in reading.items_of(path):  # an image is read while its item is current
            items.append((item.item_id, item.prompt,
                          [(image.model, image.read()) for image in item.images]))  # fmt: skip
        assert [prompt for _, prompt, _ in items] == ["a fox 0", "a fox 1"], name
        for i, (_, _, images) in enumerate(items):
            assert sorted(m for m, _ in images) == sorted(MODELS), name
            assert all(data == picture(m, i) for m, data in images), name
        expected = ["line-1", "line-2"] if name == "parquet" else ["p0", "p1"]
        assert [item_id for item_id, _, _ in items] == expected, name


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"items.csv": "item_id,image_0,image_1\na,x.png,y.png\n"}, "the table has no column 'prompt' (its columns: item_id, image_0, image_1)"),
        ({"items.csv": "prompt,picture\na,x.png\n"}, "the table has no image column"),
        ({"items.csv": ""}, "the table is empty"),
        ({"items.jsonl": "\n"}, "the table is empty"),
        ({"items.jsonl": '{"prompt": "a", "image_0": "a.png", "image_1": "b.png"}\n{oops\n'},
         "line 2: not JSON"),
        ({"items.csv": "prompt,image_0,image_1\na,a.png,bad.png\n"},
         "line 2, image_1: not a PNG, JPEG or WebP image"),
        ({"items.csv": "prompt,image_0,image_1\na,a.png,cut.png\n"},
         "line 2, image_1: unreadable image"),
        ({"items.csv": "item_id,prompt,image_0,image_1\nx,a,a.png,b.png\ny,b,a.png,b.png\n"
                       "x,c,a.png,b.png\n"}, "line 4 (item x): the item id is used twice (first: line 2)"),
        ({"items.csv": "prompt,image_0,image_1\na,a.png,../outside.png\n"},
         "line 2, image_1: '../outside.png' is outside the folder"),
        ({"items.csv": "prompt,image_0,image_1\na,a.png,missing.png\n"},
         "line 2, image_1: no image file 'missing.png'"),
        ({"items.csv": "prompt,image_0,image_1\na,a.png,\n"},
         "line 2 (item line-2): 1 images; an item has 2 to 16"),
        ({"items.csv": "prompt,image_0,image_1\n,a.png,b.png\n"}, "line 2: an empty prompt"),
        ({"items.csv": "prompt,image_0,image_1\na,a.png,big.png\n"},
         "line 2, image_1: 600 bytes, over the limit of 500"),
    ],
)  # fmt: skip
def test_malformed_imports_name_the_line_and_create_nothing(sqlite_app, tmp_path, monkeypatch,
                                                            files, message):  # fmt: skip
    app = sqlite_app
    folder = tmp_path / "set"
    folder.mkdir()
    (tmp_path / "outside.png").write_bytes(picture("good", 9))
    (folder / "a.png").write_bytes(picture("good", 1))
    (folder / "b.png").write_bytes(picture("fair", 1))
    (folder / "bad.png").write_bytes(b"GIF89a not an image we take")
    (folder / "cut.png").write_bytes(picture("poor", 1)[:40])
    (folder / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(592))
    monkeypatch.setattr(reading, "MAX_IMAGE_BYTES", 500)
    for name, text in files.items():
        (folder / name).write_text(text)
    result = _import(app, folder)
    assert result.exit_code == 1, result.output
    assert message in str(result.exception) or message in result.output
    assert _counts(app) == (0, 0, 0)  # no campaign, no round, no image


def test_link_out_of_the_folder_and_zip_slip_are_refused(sqlite_app, tmp_path):
    folder = folder_tree(tmp_path / "set", items=1)
    (tmp_path / "secret.png").write_bytes(picture("good", 5))
    (folder / "item-0" / "zz.png").symlink_to(tmp_path / "secret.png")
    result = _import(sqlite_app, folder)
    assert result.exit_code == 1 and "outside the folder" in str(result.exception)
    slip = _zip(tmp_path / "slip.zip", {"items.csv": b"prompt,image_0,image_1\na,../x.png,y.png\n"})
    result = _import(sqlite_app, slip)
    assert result.exit_code == 1 and "'../x.png' is outside the zip" in str(result.exception)
    assert _counts(sqlite_app) == (0, 0, 0)


# -- end to end over HTTP ------------------------------------------------------------------------


@pytest.fixture
def s3_app(tmp_path, postgres_url, seaweed):
    from tests.fixtures.coordinator import _truncate

    application = make_app(tmp_path, postgres_url, **seaweed.store_config(seaweed.make_bucket()))
    _truncate(application)
    yield application
    db.get_engine(application).dispose()


def _honest(task: dict, models: dict[str, str]) -> list:
    """Best model first, the attention image (no model) last."""
    rank = {m: n for n, m in enumerate(MODELS)}
    return sorted((i["id"] for i in task["images"]), key=lambda i: rank.get(models.get(i), 99))


def test_image_set_end_to_end_over_http(s3_app, tmp_path):
    import datasets

    app = s3_app
    owner = Owner(app.test_client())
    created = owner.campaign(kind="image_set", annotators_per_round=2, tasks_per_annotator=4,
                             prompt="which lighthouse is best")  # fmt: skip
    campaign_id = created["id"]
    started = owner.post(f"/api/campaigns/{campaign_id}/start")
    assert started.status_code == 409 and "items" in started.json["error"]["message"]
    body = _zip(tmp_path / "items.zip", {
        **{f"p{i}/prompt.txt": f"a lighthouse {i}".encode() for i in range(4)},
        **{f"p{i}/{m}.jpg": picture(m, i, "JPEG") for i in range(4) for m in MODELS},
    }).read_bytes()  # fmt: skip
    refused = owner.post(f"/api/campaigns/{campaign_id}/items", data=b"x,y\n",
                         content_type="text/plain")  # fmt: skip
    assert refused.status_code == 400
    bad = owner.post(f"/api/campaigns/{campaign_id}/items", data=b"PK\x03\x04 torn",
                     content_type="application/zip")  # fmt: skip
    assert bad.status_code == 400 and "not a readable zip" in bad.json["error"]["message"]
    imported = owner.post(f"/api/campaigns/{campaign_id}/items", data=body,
                          content_type="application/zip")  # fmt: skip
    assert imported.status_code == 201, imported.json
    assert imported.json | {"campaign_id": None} == {
        "campaign_id": None,
        "items": 4,
        "images": 12,
        "stored": 16,
        "reused": 0,
        "rounds": 4,
        "skipped": 0,
        "skipped_rows": [],
        "dry_run": False,
        "preview": [],
    }
    again = owner.post(f"/api/campaigns/{campaign_id}/items", data=body,
                       content_type="application/zip")  # fmt: skip
    assert (
        again.status_code == 400
        and "used twice (first: an earlier import)" in (again.json["error"]["message"])
    )
    assert owner.post(f"/api/campaigns/{campaign_id}/start").status_code == 200
    with db.session_scope(app) as session:
        models = {i.id: i.model for i in session.scalars(select(Image))}
        prompts = {r.number: r.prompt for r in session.scalars(select(Round))}
    tokens = owner.annotators(campaign_id, 2)
    client = app.test_client()
    store = app.extensions["rankloop_store"]
    for token in tokens:
        while (task := client.get("/api/tasks/next", headers=bearer(token))).status_code == 200:
            task = task.json
            assert task["prompt"] == prompts[task["round"]]  # the item's prompt, not the campaign's
            assert len(task["images"]) == len(MODELS) + 1
            assert all(i["url"].startswith("http") for i in task["images"])  # presigned by S3
            order = _honest(task, models)
            posted = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                                 headers=bearer(token))  # fmt: skip
            assert posted.status_code == 201 and posted.json["attention_passed"] is True
    state = owner.get(f"/api/campaigns/{campaign_id}").json
    assert state["status"] == "finished"
    with db.session_scope(app) as session:
        rounds = session.scalars(select(Round).where(Round.campaign_id == campaign_id)).all()
        assert all(r.status == "closed" and r.consensus is not None for r in rounds)
        for round_ in rounds:
            by_position = {i.position: i for i in round_.images}
            assert by_position[round_.consensus.order[0]].model == "good"
        assert store.exists(rounds[0].images[0].key)
    pairs = owner.get(f"/api/campaigns/{campaign_id}/export?format=pairs.parquet").data
    path = tmp_path / "pairs.parquet"
    path.write_bytes(pairs)
    import pandas as pd

    frame = pd.read_parquet(path)
    assert len(frame) == 4 * 2 * 3  # items x annotators x pairs of three candidates
    assert set(frame["model_0"]) | set(frame["model_1"]) == set(MODELS)
    assert set(frame["caption"]) == {f"a lighthouse {i}" for i in range(4)}
    best = frame.apply(lambda r: r["model_0"] if r["label_0"] == 1.0 else r["model_1"], axis=1)
    assert (best[(frame["model_0"] == "good") | (frame["model_1"] == "good")] == "good").all()
    lines = owner.get(f"/api/campaigns/{campaign_id}/export?format=rankings.jsonl").data
    for row in map(json.loads, lines.decode().splitlines()):
        assert sorted(m for m in row["image_models"] if m) == sorted(MODELS)
        assert row["prompt"] == prompts[row["round"]]
    folder = tmp_path / "dataset"
    from rankloop.commands.export import export_command

    settings = settings_of(app)
    result = CliRunner().invoke(export_command, [
        campaign_id, "--dataset", str(folder), "--splits", "0.5,0.25,0.25",
        "--url", settings.database_url,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    captions = [set(loaded[s]["caption"]) for s in loaded]
    assert sum(len(c) for c in captions) == len(set().union(*captions)) == 4


def test_sweep_closes_a_full_item_whose_close_was_lost(sqlite_app, tmp_path, monkeypatch):
    """An item's round has no deadline: the sweep still closes it once its quorum is in (the
    inline close died with its process), and the last one finishes the campaign."""
    from service import sweep as sweeping
    from service.api import tasks

    app = sqlite_app
    result = _import(app, folder_tree(tmp_path / "set", items=1), "--start",
                     "--set", "tasks_per_annotator=1")  # fmt: skip
    assert result.exit_code == 0, result.output
    with db.session_scope(app) as session:
        campaign_id = session.scalars(select(Campaign.id)).one()
    monkeypatch.setattr(tasks, "after_ranking", lambda round_id: None)  # the close is lost
    owner = Owner(app.test_client())
    client = app.test_client()
    for token in owner.annotators(campaign_id, 2):
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        order = [i["id"] for i in task["images"]]
        posted = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                             headers=bearer(token))  # fmt: skip
        assert posted.status_code == 201
    assert owner.get(f"/api/campaigns/{campaign_id}").json["status"] == "running"
    with app.app_context(), db.session_scope(app) as session:
        outcome = sweeping.sweep(session)
    assert "finished" in outcome.events
    assert owner.get(f"/api/campaigns/{campaign_id}").json["status"] == "finished"


def test_a_large_image_gets_a_thumbnail_and_a_small_one_is_its_own(tmp_path):
    from rankloop.core.storage import THUMB_SIDE, LocalStore
    from service.image_sets.storing import Blobs, check_image

    store = LocalStore(tmp_path / "store")
    blobs = Blobs(store)
    buffer = io.BytesIO()
    PILImage.new("RGB", (600, 300), (10, 200, 30)).save(buffer, format="JPEG")
    large = reading.RawImage("large", buffer.getvalue, "m")
    key, thumb, new = blobs.put(*check_image(large))
    assert new and key.endswith(".jpg") and thumb.endswith(".thumb.webp")
    assert PILImage.open(io.BytesIO(store.get(thumb))).size == (THUMB_SIDE, THUMB_SIDE // 2)
    small = reading.RawImage("small", lambda: picture("good", 1), "m")
    key, thumb, _ = blobs.put(*check_image(small))
    assert thumb == key
    assert blobs.put(*check_image(large))[2] is False and (blobs.stored, blobs.reused) == (2, 1)
    assert Blobs(store).put(*check_image(large))[2] is False  # found in the store: not put again


def test_items_beyond_the_window_wait_and_open_as_others_close(sqlite_app, tmp_path, monkeypatch):
    """At most OPEN_ITEMS items are open at once (choosing a task weighs every open round); a
    closed item lets the next queued one open, and the set finishes with its last item."""
    from service.image_sets import importer, rounds

    monkeypatch.setattr(importer, "OPEN_ITEMS", 2)
    monkeypatch.setattr(rounds, "OPEN_ITEMS", 2)
    app = sqlite_app
    result = _import(app, folder_tree(tmp_path / "set", items=3), "--start",
                     "--set", "tasks_per_annotator=3")  # fmt: skip
    assert result.exit_code == 0, result.output
    with db.session_scope(app) as session:
        campaign_id = session.scalars(select(Campaign.id)).one()
    assert [r.status for r, _ in _rounds(app, campaign_id)] == ["open", "open", "queued"]
    assert _rounds(app, campaign_id)[2][0].opened_at is None
    owner = Owner(app.test_client())
    client = app.test_client()
    seen: list[int] = []
    tokens = owner.annotators(campaign_id, 2)
    # An annotator who ranked every open item comes back once a queued one has opened.
    for token in [*tokens, *tokens]:
        while (task := client.get("/api/tasks/next", headers=bearer(token))).status_code == 200:
            seen.append(task.json["round"])
            order = [i["id"] for i in task.json["images"]]
            posted = client.post(f"/api/tasks/{task.json['task_id']}/ranking",
                                 json={"order": order}, headers=bearer(token))  # fmt: skip
            assert posted.status_code == 201
            statuses = [r.status for r, _ in _rounds(app, campaign_id)]
            assert statuses.count("open") <= 2
    assert sorted(seen) == [0, 0, 1, 1, 2, 2]
    assert [r.status for r, _ in _rounds(app, campaign_id)] == ["closed"] * 3
    assert owner.get(f"/api/campaigns/{campaign_id}").json["status"] == "finished"
