"""Image-set imports from a Hugging Face ``datasets`` folder (on disk, and zipped over HTTP), the
owner's choice to skip malformed rows with a report (each malformed case in both modes: refused
whole with its line and nothing created, or left out and listed with the good rows imported),
the API's dry run with its preview and the item list; and a study's prompt list from a datasets
folder, read by the same reader (:mod:`service.dataset_folders`).
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from rankloop.core.errors import InvalidInput
from service import dataset_folders, prompt_lists
from service.image_sets import reading, tables
from tests.fixtures.coordinator import Owner
from tests.test_image_sets import MODELS, _counts, _import, _rounds, picture

datasets = pytest.importorskip("datasets")


def hf_items(
    prompts: list[str], images: list[list[bytes | None]] | None = None
) -> datasets.Dataset:
    """One row per item: ``prompt``, ``image_<n>`` (``datasets.Image``) and ``model_<n>``."""
    images = images or [[picture(m, i) for m in MODELS] for i in range(len(prompts))]
    columns: dict = {"prompt": prompts}
    features: dict = {"prompt": datasets.Value("string")}
    for n, model in enumerate(MODELS):
        columns[f"image_{n}"] = [{"bytes": row[n], "path": None} for row in images]
        columns[f"model_{n}"] = [model] * len(prompts)
        features[f"image_{n}"] = datasets.Image()
        features[f"model_{n}"] = datasets.Value("string")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def zip_folder(folder: Path, under: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{under}{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def _zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# -- the reader ----------------------------------------------------------------------------------


def test_a_datasets_folder_reads_row_by_row_on_disk_and_zipped(tmp_path):
    one = tmp_path / "one"
    hf_items(["a fox 0", "a fox 1"]).save_to_disk(str(one))
    split = tmp_path / "dict"
    test = hf_items(["a fox 1"], [[picture(m, 1) for m in MODELS]])
    datasets.DatasetDict({"train": hf_items(["a fox 0"]), "test": test}).save_to_disk(str(split))
    for folder in (one, split):
        found = dataset_folders.on_disk(folder)
        assert found is not None
        rows = list(dataset_folders.rows(found, ["prompt"]))
        assert rows == [(1, {"prompt": "a fox 0"}), (2, {"prompt": "a fox 1"})]
        with zipfile.ZipFile(io.BytesIO(zip_folder(folder, "ds/"))) as archive:
            zipped = dataset_folders.in_zip(archive)
            assert zipped is not None and zipped.prefix == "ds/"
            full = list(dataset_folders.rows(zipped))
            assert [r["image_1"]["bytes"] for _, r in full] == [picture("fair", i) for i in (0, 1)]
    assert dataset_folders.on_disk(tmp_path) is None


def test_a_broken_datasets_folder_is_refused_in_words(tmp_path):
    folder = tmp_path / "ds"
    hf_items(["a fox"]).save_to_disk(str(folder))
    (folder / "data-00000-of-00001.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(InvalidInput, match="not a readable Arrow stream"):
        list(reading.items_of(folder))
    (folder / "state.json").write_text('{"_data_files": [{"filename": "../x.arrow"}]}')
    with pytest.raises(InvalidInput, match=re.escape("a data file named '../x.arrow'")):
        list(reading.items_of(folder))
    (folder / "state.json").write_text('{"_data_files": [{"filename": "gone.arrow"}]}')
    with pytest.raises(InvalidInput, match=re.escape("has no gone.arrow")):
        list(reading.items_of(folder))


def test_an_image_set_imports_from_a_datasets_folder(sqlite_app, tmp_path):
    folder = tmp_path / "hf"
    hf_items([f"a fox {i}" for i in range(3)]).save_to_disk(str(folder))
    result = _import(sqlite_app, folder)
    assert result.exit_code == 0, result.output
    assert "imported 3 items (9 images;" in result.output
    rounds = _rounds(sqlite_app, rounds_campaign(sqlite_app))
    assert [r.prompt for r, _ in rounds] == [f"a fox {i}" for i in range(3)]
    assert [r.item_id for r, _ in rounds] == ["line-1", "line-2", "line-3"]
    assert [i.model for i in rounds[0][1] if i.role == "candidate"] == list(MODELS)


def rounds_campaign(app) -> str:
    from sqlalchemy import select

    from service import db
    from service.models import Campaign

    with db.session_scope(app) as session:
        return session.scalars(select(Campaign.id)).one()


def test_a_datasets_image_row_that_is_no_image_names_its_row(sqlite_app, tmp_path):
    folder = tmp_path / "hf"
    bad = [[picture(m, i) for m in MODELS] for i in range(3)]
    bad[1][2] = b"GIF89a nothing we take"
    hf_items([f"a fox {i}" for i in range(3)], bad).save_to_disk(str(folder))
    refused = _import(sqlite_app, folder)
    assert refused.exit_code == 1
    assert "line 2, image_2: not a PNG, JPEG or WebP image" in str(refused.exception)
    assert _counts(sqlite_app) == (0, 0, 0)
    skipped = _import(sqlite_app, folder, "--skip-bad-rows")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped line 2 (item line-2): line 2, image_2: not a PNG" in skipped.output
    assert "imported 2 items" in skipped.output and "skipped 1 malformed items" in skipped.output


# -- each malformed case, refused whole or skipped -------------------------------------------------

GOOD = "good,a.png,b.png\n"
CASES = {
    # name: (file, its text, the message; None: the whole file is refused in both modes)
    "missing column": ("items.csv", "item_id,image_0,image_1\nx,a.png,b.png\n", None),
    "missing cell": ("items.jsonl", '{"prompt": "good", "image_0": "a.png", "image_1": "b.png"}\n'
                     '{"image_0": "a.png", "image_1": "b.png"}\n', "line 2: no prompt"),
    "unreadable image": ("items.csv", f"prompt,image_0,image_1\n{GOOD}bad,a.png,cut.png\n",
                         "line 3, image_1: unreadable image"),
    "duplicate item id": ("items.csv", "item_id,prompt,image_0,image_1\nx,good,a.png,b.png\n"
                          "x,again,a.png,b.png\n", "the item id is used twice (first: line 2)"),
    "empty file": ("items.csv", "", None),
    "image over the limit": ("items.csv", f"prompt,image_0,image_1\n{GOOD}bad,a.png,big.png\n",
                             "line 3, image_1: 600 bytes, over the limit of 500"),
    "path outside the folder": ("items.csv",
                                f"prompt,image_0,image_1\n{GOOD}bad,a.png,../outside.png\n",
                                "line 3, image_1: '../outside.png' is outside the folder"),
}  # fmt: skip
WHOLE = {"missing column": "the table has no column 'prompt'", "empty file": "the table is empty"}


def _malformed(tmp_path: Path, name: str, monkeypatch) -> Path:
    folder = tmp_path / "set"
    folder.mkdir()
    (tmp_path / "outside.png").write_bytes(picture("good", 9))
    (folder / "a.png").write_bytes(picture("good", 1))
    (folder / "b.png").write_bytes(picture("fair", 1))
    (folder / "cut.png").write_bytes(picture("poor", 1)[:40])
    (folder / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(592))
    monkeypatch.setattr(reading, "MAX_IMAGE_BYTES", 500)
    monkeypatch.setattr(tables, "MAX_IMAGE_BYTES", 500)
    filename, text, _ = CASES[name]
    (folder / filename).write_text(text)
    return folder


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_row_refuses_the_import_by_default(sqlite_app, tmp_path, monkeypatch, case):
    folder = _malformed(tmp_path, case, monkeypatch)
    result = _import(sqlite_app, folder)
    assert result.exit_code == 1, result.output
    message = CASES[case][2] or WHOLE[case]
    assert message in str(result.exception)
    assert _counts(sqlite_app) == (0, 0, 0)


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_row_is_skipped_and_reported_when_asked(sqlite_app, tmp_path, monkeypatch,
                                                            case):  # fmt: skip
    folder = _malformed(tmp_path, case, monkeypatch)
    result = _import(sqlite_app, folder, "--skip-bad-rows")
    if CASES[case][2] is None:  # nothing in the file to import: refused as a whole
        assert result.exit_code == 1 and WHOLE[case] in str(result.exception)
        assert _counts(sqlite_app) == (0, 0, 0)
        return
    assert result.exit_code == 0, result.output
    assert CASES[case][2] in result.output and "skipped 1 malformed items" in result.output
    rounds = _rounds(sqlite_app, rounds_campaign(sqlite_app))
    assert [r.prompt for r, _ in rounds] == ["good"]  # the good row, and only it
    assert _counts(sqlite_app) == (1, 1, 3)  # its two images and its attention image


# -- over HTTP: skip, dry run with a preview, the item list ---------------------------------------


def test_a_zipped_datasets_folder_over_http_with_a_dry_run_and_skips(sqlite_app, tmp_path):
    owner = Owner(sqlite_app.test_client())
    campaign_id = owner.campaign(kind="image_set", prompt="foxes")["id"]
    images = [[picture(m, i) for m in MODELS] for i in range(6)]
    images[4][0] = picture("good", 4)[:30]  # torn: row 5 is unreadable
    folder = tmp_path / "hf"
    hf_items([f"a fox {i}" for i in range(6)], images).save_to_disk(str(folder))
    body = zip_folder(folder, "hf/")
    url = f"/api/campaigns/{campaign_id}/items"

    def post(query: str):
        return owner.post(f"{url}?{query}", data=body, content_type="application/zip")

    refused = post("")
    assert refused.status_code == 400
    assert refused.json["error"]["message"].startswith("line 5, image_0: unreadable image")
    checked = post("dry_run=true&on_error=skip")
    assert checked.status_code == 200, checked.json
    assert checked.json["dry_run"] and checked.json["items"] == 5 and checked.json["skipped"] == 1
    assert checked.json["skipped_rows"][0]["line"] == 5
    preview = checked.json["preview"]
    assert [p["prompt"] for p in preview] == [f"a fox {i}" for i in range(4)]
    assert [i["model"] for i in preview[0]["images"]] == list(MODELS)
    assert preview[0]["images"][0]["src"].startswith("data:image/webp;base64,")
    assert owner.get(f"{url}").json["items"] == []  # the dry run kept nothing
    bad_choice = owner.post(f"{url}?on_error=maybe", data=body, content_type="application/zip")
    assert bad_choice.status_code == 400 and "on_error" in bad_choice.json["error"]["message"]
    imported = post("on_error=skip")
    assert imported.status_code == 201, imported.json
    assert imported.json["items"] == 5 and imported.json["skipped"] == 1
    assert imported.json["skipped_rows"] == [
        {"line": 5, "item_id": "line-5", "reason": checked.json["skipped_rows"][0]["reason"]}
    ]
    listed = owner.get(f"{url}?limit=2").json
    assert [i["prompt"] for i in listed["items"]] == ["a fox 0", "a fox 1"]
    assert listed["next_offset"] == 2
    roles = [i["role"] for i in listed["items"][0]["images"]]
    assert roles == ["candidate"] * 3 + ["attention"]


def test_all_rows_malformed_is_refused_with_every_reason(sqlite_app, tmp_path):
    owner = Owner(sqlite_app.test_client())
    campaign_id = owner.campaign(kind="image_set", prompt="foxes")["id"]
    body = b'{"prompt": "", "image_0": "a", "image_1": "b"}\n{oops\n'
    refused = owner.post(f"/api/campaigns/{campaign_id}/items?on_error=skip", data=body,
                         content_type="application/x-ndjson")  # fmt: skip
    assert refused.status_code == 400
    assert "all 2 items were malformed" in refused.json["error"]["message"]
    assert [d["line"] for d in refused.json["error"]["details"]] == [1, 2]
    assert _counts(sqlite_app)[1:] == (0, 0)


# -- a study's prompt list from a datasets folder --------------------------------------------------


def test_a_study_prompt_list_comes_from_a_zipped_datasets_folder(sqlite_app, tmp_path):
    folder = tmp_path / "prompts"
    datasets.Dataset.from_dict({
        "prompt": ["a red apple", "a green pear"], "seed": [7, None],
        "label": [1, 0],  # another column: not read
    }).save_to_disk(str(folder))  # fmt: skip
    rows = prompt_lists.read_folder(folder)
    assert [(r.line, r.prompt, r.overrides) for r in rows] == [
        (1, "a red apple", {"seed": 7}), (2, "a green pear", {}),
    ]  # fmt: skip
    owner = Owner(sqlite_app.test_client())
    form = {"file": (io.BytesIO(zip_folder(folder)), "prompts.zip"),
            "study": '{"name": "hf", "settings": {"m": 4}}'}  # fmt: skip
    made = owner.post("/api/studies", data=form, content_type="multipart/form-data")
    assert made.status_code == 201, made.json
    assert [c["prompt"] for c in made.json["campaigns"]] == ["a red apple", "a green pear"]


def test_a_datasets_prompt_list_without_prompts_makes_nothing(sqlite_app, tmp_path):
    folder = tmp_path / "prompts"
    datasets.Dataset.from_dict({"text": ["a red apple"]}).save_to_disk(str(folder))
    owner = Owner(sqlite_app.test_client())
    for data, message in (
        (zip_folder(folder), "the dataset has no 'prompt' column"),
        (b"PK\x03\x04 torn", "not a zip of a datasets folder"),
        (_zip_of({"notes.txt": b"a red apple"}), "the zip holds no datasets folder"),
    ):
        form = {"file": (io.BytesIO(data), "p.zip"), "study": '{"settings": {"m": 4}}'}
        refused = owner.post("/api/studies", data=form, content_type="multipart/form-data")
        assert refused.status_code == 422, refused.json
        assert message in refused.json["error"]["message"]
    assert _counts(sqlite_app) == (0, 0, 0)


def test_a_bad_row_of_a_datasets_prompt_list_names_its_row_across_splits(tmp_path):
    folder = tmp_path / "prompts"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"prompt": ["a red apple", "a green pear"]}),
        "test": datasets.Dataset.from_dict({"prompt": ["a plum", "a fig\x00"]}),
    }).save_to_disk(str(folder))  # fmt: skip
    with pytest.raises(prompt_lists.BadPromptList) as refused:
        prompt_lists.read_upload(io.BytesIO(zip_folder(folder)), "hf")
    assert refused.value.details == [
        {"field": "prompts", "line": 4, "message": "the prompt holds a NUL byte"}
    ]
