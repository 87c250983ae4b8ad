"""A dataset folder (``rankloop export ... --dataset DIR``): several campaigns, split by prompt,
loaded by ``datasets`` through its card and through its Parquet files, its splits never sharing
a prompt, its labels agreeing with the stored rankings row by row, and its card's header true.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from rankloop.commands.export import export_command
from rankloop.core.settings import settings_of
from service import db
from service.datasets import formats
from service.datasets.card import feature, size_category
from service.datasets.pairs import groups
from service.datasets.splits import SPLITS, Splitter, parse_fractions
from service.models import Image, Ranking
from tests.fixtures.coordinator import Owner, bearer, render_round

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

M, QUORUM = 4, 2
FRACTIONS = (0.5, 0.25, 0.25)


def _prompts() -> list[str]:
    """Two prompts per split under FRACTIONS (the hash is fixed, so the same ones every run),
    the first one twice: two campaigns of one prompt must land in one split."""
    splitter, chosen = Splitter(FRACTIONS), {name: [] for name in SPLITS}
    for i in range(200):
        prompt = f"a photo of thing {i}"
        if len(chosen[splitter(prompt)]) < 2:
            chosen[splitter(prompt)].append(prompt)
    prompts = [p for name in SPLITS for p in chosen[name]]
    assert len(prompts) == 2 * len(SPLITS)
    return [*prompts, prompts[0]]


def _run_campaign(app: Flask, owner: Owner, prompt: str, variant: int) -> str:
    created = owner.campaign(prompt=prompt, start=True, m=M, annotators_per_round=QUORUM,
                             rounds=1, allow_ties=True, tasks_per_annotator=1)  # fmt: skip
    _rank_round(app, owner, created["id"], variant)
    return created["id"]


def _rank_round(app: Flask, owner: Owner, campaign_id: str, variant: int) -> None:
    """Round 0 of the campaign rendered and ranked by a quorum (a tie when ``variant`` is 1)."""
    tokens = owner.annotators(campaign_id, QUORUM)
    render_round(app, campaign_id, 0, m=M)
    client = app.test_client()
    for n, token in enumerate(tokens):
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        ids = [i["id"] for i in task["images"]]
        order: list = ids if (n + variant) % 2 == 0 else ids[::-1]
        if variant == 1 and n == 0:
            order = [[ids[0], ids[1]], *ids[2:]]  # a tie
        response = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                               headers=bearer(token))  # fmt: skip
        assert response.status_code == 201, response.json


@pytest.fixture
def campaigns(app: Flask, owner: Owner) -> list[str]:
    return [_run_campaign(app, owner, p, v % 3) for v, p in enumerate(_prompts())]


def _export(app: Flask, args: list[str]):
    settings = settings_of(app)
    return CliRunner().invoke(
        export_command, [*args, "--url", settings.database_url, "--store", settings.store_url]
    )


def test_dataset_folder_loads_with_its_splits_disjoint_by_prompt(app, campaigns, tmp_path):
    import datasets
    import yaml

    folder = tmp_path / "prefs"
    result = _export(app, [*campaigns, "--dataset", str(folder), "--splits", "0.5,0.25,0.25",
                           "--images", "embed", "--license", "cc-by-4.0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    cache = str(tmp_path / "hf")
    loaded = datasets.load_dataset(str(folder), cache_dir=cache)
    assert set(loaded) == set(SPLITS)
    expected = datasets.Features.from_arrow_schema(formats.schema("pairs"))
    for split in SPLITS:
        assert loaded[split].features == expected  # the card's features are the files' own
    by_files = datasets.load_dataset(
        "parquet", cache_dir=cache,
        data_files={s: str(folder / "data" / f"{s}-*.parquet") for s in SPLITS},
    )  # fmt: skip
    assert {s: by_files[s].num_rows for s in SPLITS} == {s: loaded[s].num_rows for s in SPLITS}

    # A prompt is in one split, the one its hash names; every campaign's pairs are there.
    splitter = Splitter(FRACTIONS)
    captions = {s: set(loaded[s]["caption"]) for s in SPLITS}
    for split, names in captions.items():
        assert names and all(splitter(c) == split for c in names)
    assert not (captions["train"] & captions["validation"] or captions["train"] & captions["test"]
                or captions["validation"] & captions["test"])  # fmt: skip
    assert set().union(*captions.values()) == set(_prompts())
    pairs_per_ranking = M * (M - 1) // 2
    assert sum(loaded[s].num_rows for s in SPLITS) == pairs_per_ranking * QUORUM * len(campaigns)
    _assert_counts_per_prompt(loaded)

    # Labels agree with the stored rankings, row by row.
    with db.session_scope(app) as session:
        rankings = {r.id: r for r in session.scalars(select(Ranking))}
        images = {i.id: i for i in session.scalars(select(Image))}
        session.expunge_all()
    store = app.extensions["rankloop_store"]
    for split in SPLITS:
        for row in loaded[split]:
            places = {p: n for n, g in enumerate(groups(rankings[row["ranking_id"]].positions))
                      for p in g}  # fmt: skip
            first, second = images[row["image_0_uid"]], images[row["image_1_uid"]]
            a, b = places[first.position], places[second.position]
            assert row["label_0"] == (0.5 if a == b else 1.0 if a < b else 0.0)
            assert row["jpg_0"] == store.get(first.key)
            assert (
                row["user_id"] > 0
                and row["annotator_id"] == rankings[row["ranking_id"]].annotator_id
            )

    # The card: the Hub's header (licence, files, sizes) and how the data was collected.
    text = (folder / "README.md").read_text()
    _, head, body = text.split("---\n", 2)
    header = yaml.safe_load(head)
    assert header["license"] == "cc-by-4.0"
    info = header["dataset_info"]
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == {
        s: loaded[s].num_rows for s in SPLITS
    }
    assert info["download_size"] == sum(p.stat().st_size for p in (folder / "data").iterdir())
    assert [f["name"] for f in info["features"]] == formats.schema("pairs").names
    assert header["configs"][0]["data_files"][0] == {
        "split": "train",
        "path": "data/train-*.parquet",
    }
    for campaign_id in campaigns:
        assert f"| {campaign_id} |" in body
    assert "Krippendorff's alpha" in body and "Attention policy" in body
    for split in SPLITS:
        assert f"| {split} | {loaded[split].num_rows} | 2 |" in body or split == "train"
    assert f"| train | {loaded['train'].num_rows} | 2 | 3 | 6 |" in body  # a prompt run twice


def _assert_counts_per_prompt(loaded) -> dict[str, int]:
    """``num_example_per_prompt`` is the rows of its caption over every split (Pick-a-Pic v2's
    meaning); the rows per caption."""
    rows: dict[str, int] = {}
    for split in loaded:
        for caption in loaded[split]["caption"]:
            rows[caption] = rows.get(caption, 0) + 1
    for split in loaded:
        pairs = zip(loaded[split]["caption"], loaded[split]["num_example_per_prompt"], strict=True)
        assert all(count == rows[caption] for caption, count in pairs)
    return rows


def test_a_study_exports_as_one_dataset_of_its_campaigns(app, owner, tmp_path):
    import datasets

    prompts = _prompts()[:-1]  # six prompts, two a split
    settings = {"m": M, "annotators_per_round": QUORUM, "rounds": 1, "allow_ties": True,
                "tasks_per_annotator": 1}  # fmt: skip
    response = owner.post("/api/studies", json={"name": "things", "prompts": prompts,
                                                "settings": settings, "start": True})  # fmt: skip
    assert response.status_code == 201, response.json
    study = response.json
    members = [c["id"] for c in study["campaigns"]]
    for variant, campaign_id in enumerate(members):
        _rank_round(app, owner, campaign_id, variant % 3)
    alone = _run_campaign(app, owner, prompts[0], 0)  # the study's first prompt, once more

    folder = tmp_path / "study"
    result = _export(app, [study["id"], alone, "--dataset", str(folder),
                           "--splits", "0.5,0.25,0.25"])  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    captions = {s: set(loaded[s]["caption"]) for s in SPLITS}
    splitter = Splitter(FRACTIONS)
    for split, names in captions.items():
        assert len(names) == 2 and all(splitter(c) == split for c in names)
    per_campaign = M * (M - 1) // 2 * QUORUM
    rows = _assert_counts_per_prompt(loaded)
    assert rows == {p: per_campaign * (2 if p == prompts[0] else 1) for p in prompts}
    # The study's campaigns in its prompt order, then the campaign named after it.
    for split in SPLITS:
        seen = list(dict.fromkeys(loaded[split]["campaign_id"]))
        assert seen == [c for c in [*members, alone] if c in seen]
    body = (folder / "README.md").read_text()
    assert f"It holds study things (`{study['id']}`): {len(prompts)} prompts" in body
    for campaign_id in [*members, alone]:
        assert f"| {campaign_id} |" in body

    # One file: a study id alone is accepted wherever a campaign id is.
    out = tmp_path / "study.parquet"
    result = _export(app, [study["id"], "--table", "pairs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = datasets.load_dataset("parquet", data_files=str(out), cache_dir=str(tmp_path / "hf"))
    assert set(table["train"]["campaign_id"]) == set(members)
    assert set(table["train"]["num_example_per_prompt"]) == {per_campaign}
    result = _export(app, ["nosuchid", "--dataset", str(tmp_path / "none")])
    assert result.exit_code != 0 and "no campaign or study" in str(result.exception)


def test_dataset_folder_refusals_leave_nothing(app, campaigns, tmp_path):
    folder = tmp_path / "out"
    for args, message in (
        (["--table", "consensus"], "splits by prompt"),
        (["--splits", "0.5,0.5"], "three numbers"),
        (["--splits", "0.9,0.2,0.1"], "summing to 1"),
        (["--format", "jsonl"], "Parquet shards"),
    ):
        result = _export(app, [campaigns[0], "--dataset", str(folder), *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not folder.exists()
    result = _export(app, [campaigns[0], "no-such-campaign", "--dataset", str(folder)])
    assert result.exit_code != 0 and "no campaign" in str(result.exception)
    assert not folder.exists() and not list(tmp_path.glob(".out.partial-*"))
    folder.mkdir()
    (folder / "kept.txt").write_text("mine")
    result = _export(app, [campaigns[0], "--dataset", str(folder)])
    assert result.exit_code != 0 and "not an empty folder" in str(result.exception)
    assert [p.name for p in folder.iterdir()] == ["kept.txt"]
    result = _export(app, [*campaigns[:2], "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "one --dataset folder" in result.output


def test_splits_are_stable_and_follow_the_fractions():
    splitter = Splitter((0.8, 0.1, 0.1))
    prompts = [f"prompt {i}" for i in range(20_000)]
    counts = {s: 0 for s in SPLITS}
    for p in prompts:
        counts[splitter(p)] += 1
    assert counts["train"] / len(prompts) == pytest.approx(0.8, abs=0.02)
    assert counts["test"] / len(prompts) == pytest.approx(0.1, abs=0.02)
    again = Splitter((0.8, 0.1, 0.1))
    assert [again(p) for p in prompts[:500]] == [splitter(p) for p in prompts[:500]]
    # Fixed by the hash, not the run: the same prompt, the same split, in any export.
    assert [splitter(f"prompt {i}") for i in range(6)] == [
        Splitter((0.8, 0.1, 0.1))(f"prompt {i}") for i in range(6)
    ]
    assert {Splitter((1.0, 0.0, 0.0))(p) for p in prompts[:200]} == {"train"}
    assert parse_fractions("0.7,0.2,0.1") == (0.7, 0.2, 0.1)


def test_card_features_and_sizes_match_what_datasets_writes():
    import datasets
    import pyarrow as pa

    for table in ("pairs", "rankings", "consensus"):
        schema = formats.schema(table)
        ours = [feature(f.name, f.type) for f in schema]
        assert ours == datasets.Features.from_arrow_schema(schema)._to_yaml_list(), table
    assert feature("x", pa.list_(pa.float64())) == {"name": "x", "list": "float64"}
    assert [size_category(n) for n in (5, 1000, 99_999, 5_600_000)] == [
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


def test_push_to_hub_without_network_fails_in_one_line_and_keeps_the_folder(app, campaigns,
                                                                          tmp_path):  # fmt: skip
    folder = tmp_path / "pushed"
    result = _export(app, [campaigns[0], "--dataset", str(folder), "--push-to-hub", "me/prefs"])
    assert result.exit_code == 1
    assert f"wrote {folder}, but the upload to me/prefs failed" in result.output
    assert (folder / "README.md").is_file()
    result = _export(app, [campaigns[0], "--push-to-hub", "me/prefs"])
    assert result.exit_code == 2 and "give --dataset DIR" in result.output
