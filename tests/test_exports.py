"""Preference datasets: every export format against the database, the Pick-a-Pic layout loaded
by pandas and by ``datasets``, the pair rule, and the round trip export -> import -> the same
consensus. The fixtures of tests/fixtures/coordinator play the render worker's part.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from PIL import Image as PILImage
from sqlalchemy import select

from rankloop.commands.export import export_command, import_command
from rankloop.core.settings import settings_of
from service import db
from service.datasets import formats
from service.datasets.pairs import OVER_UNRANKED, RANKED, TIE, ranking_pairs
from service.datasets.pickapic import CONSENSUS_USER_ID, user_number
from service.datasets.reconsensus import rerun
from service.models import Consensus, Image, Ranking, Round
from tests.fixtures.coordinator import Owner, bearer, make_app, render_round

# Nothing may reach a hub: datasets reads these when it is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

M, QUORUM, ROUNDS = 4, 3, 2
PAIRS_PER_RANKING = M * (M - 1) // 2  # every answer orders all candidates (ties included)


def _rank(client, token: str, variant: int, attention: set[str]) -> None:
    task = client.get("/api/tasks/next", headers=bearer(token)).json
    ids = sorted(i["id"] for i in task["images"] if i["id"] not in attention)
    order: list = [*ids, *attention] if variant == 0 else [*attention, *ids[::-1]]
    if variant == 2:  # two candidates tied at the top, the rest in order
        order = [[ids[0], ids[1]], *ids[2:], *attention]
    response = client.post(
        f"/api/tasks/{task['task_id']}/ranking", json={"order": order}, headers=bearer(token)
    )
    assert response.status_code == 201, response.json


@pytest.fixture
def campaign(app: Flask, owner: Owner) -> str:
    """A finished campaign: two rounds, three answers each (one with a tie)."""
    created = owner.campaign(start=True, m=M, annotators_per_round=QUORUM, rounds=ROUNDS,
                             allow_ties=True, tasks_per_annotator=ROUNDS)  # fmt: skip
    tokens = owner.annotators(created["id"], QUORUM)
    client = app.test_client()
    for number in range(ROUNDS):
        result = render_round(app, created["id"], number, m=M)
        keys = {i["key"] for i in result["images"] if i["role"] == "attention"}
        with db.session_scope(app) as session:
            attention = set(session.scalars(select(Image.id).where(Image.key.in_(keys))))
        for variant, token in enumerate(tokens):
            _rank(client, token, variant, attention)
    assert owner.get(f"/api/campaigns/{created['id']}").json["status"] == "finished"
    return created["id"]


def _database(app: Flask, campaign_id: str):
    with db.session_scope(app) as session:
        rounds = {
            r.id: r for r in session.scalars(select(Round).where(Round.campaign_id == campaign_id))
        }
        rankings = session.scalars(
            select(Ranking).where(Ranking.round_id.in_(list(rounds))).order_by(Ranking.id)
        ).all()
        consensus = {
            rounds[c.round_id].number: c
            for c in session.scalars(select(Consensus).where(Consensus.round_id.in_(list(rounds))))
        }
        images = {
            i.id: i for i in session.scalars(select(Image).where(Image.round_id.in_(list(rounds))))
        }
        session.expunge_all()
    return rankings, consensus, images


def _load_both_ways(path: Path, tmp_path: Path):
    import datasets
    import pandas as pd

    frame = pd.read_parquet(path)
    dataset = datasets.load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert list(dataset.column_names) == list(frame.columns)
    assert dataset.num_rows == len(frame)
    return frame, dataset


def test_rankings_parquet_loads_with_pandas_and_datasets(app, owner, campaign, tmp_path):
    response = owner.get(f"/api/campaigns/{campaign}/export?format=rankings.parquet")
    assert response.status_code == 200 and response.mimetype == "application/vnd.apache.parquet"
    path = tmp_path / "rankings.parquet"
    path.write_bytes(response.data)
    frame, dataset = _load_both_ways(path, tmp_path)
    rankings, consensus, images = _database(app, campaign)
    assert list(frame.columns) == formats.schema("rankings").names
    assert len(frame) == len(rankings) == QUORUM * ROUNDS
    assert list(frame["ranking_id"]) == [r.id for r in rankings]
    for row, ranking in zip(dataset, rankings, strict=True):
        stored = [e if isinstance(e, list) else [e] for e in ranking.order]
        assert row["order"] == stored and row["annotator_id"] == ranking.annotator_id
        assert row["ties"] == any(isinstance(e, list) for e in ranking.order)
        assert row["weight"] == consensus[row["round"]].weights[ranking.annotator_id]
        assert [images[i].key for i in row["image_ids"]] == row["image_keys"]
        assert all(
            ref.startswith("https://") or ref.startswith("http://") for ref in row["image_refs"]
        )
        assert row["images"] is None and row["prompt"] == "a red apple"
        assert "image_salt" not in json.loads(row["settings"])  # the campaign's secret
        assert json.loads(row["settings"])["m"] == M
        assert row["time_taken_s"] >= 0 and row["state_key"].endswith("/state.npz")


def test_pairs_parquet_is_the_pick_a_pic_layout(app, owner, campaign, tmp_path):
    response = owner.get(f"/api/campaigns/{campaign}/export?format=pairs.parquet&images=embed")
    assert response.status_code == 200
    path = tmp_path / "pairs.parquet"
    path.write_bytes(response.data)
    frame, dataset = _load_both_ways(path, tmp_path)
    rankings, _, images = _database(app, campaign)
    pick_a_pic = ["caption", "jpg_0", "jpg_1", "label_0", "label_1", "image_0_uid",
                  "image_1_uid", "best_image_uid", "model_0", "model_1", "user_id",
                  "ranking_id", "created_at", "are_different", "has_label", "image_0_url",
                  "image_1_url"]  # fmt: skip
    assert list(frame.columns)[: len(pick_a_pic)] == pick_a_pic
    assert len(frame) == PAIRS_PER_RANKING * len(rankings)
    assert (frame["label_0"] + frame["label_1"] == 1.0).all()
    # Pick-a-Pic v2's num_example_per_prompt: the rows of that caption (one prompt here).
    assert str(frame["num_example_per_prompt"].dtype) == "int64"
    assert (frame["num_example_per_prompt"] == len(frame)).all()
    # Pick-a-Pic v2's types: user_id int64, a stable number of the pseudonym kept beside it.
    assert str(frame["user_id"].dtype) == "int64" and (frame["user_id"] > 0).all()
    by_ranking = {r.id: r.annotator_id for r in rankings}
    assert list(frame["annotator_id"]) == [by_ranking[r] for r in frame["ranking_id"]]
    assert list(frame["user_id"]) == [user_number(a) for a in frame["annotator_id"]]
    assert frame.groupby("annotator_id")["user_id"].nunique().eq(1).all()
    assert frame["user_id"].nunique() == QUORUM
    assert frame["image_0_url"].str.startswith("http").all()
    # images=embed: the refs are the keys, and the URLs (local or presigned) name them.
    urls = zip(frame["image_0_ref"], frame["image_0_url"], strict=True)
    assert all(key in url for key, url in urls)
    store = app.extensions["rankloop_store"]
    for row in dataset.select(range(0, len(frame), 5)):
        first, second = images[row["image_0_uid"]], images[row["image_1_uid"]]
        assert first.role == second.role == "candidate" and first.position < second.position
        assert row["jpg_0"] == store.get(first.key) and row["jpg_1"] == store.get(second.key)
        assert PILImage.open(io.BytesIO(row["jpg_0"])).size == (4, 4)
        expected = {1.0: first.id, 0.0: second.id, 0.5: ""}[row["label_0"]]
        assert row["best_image_uid"] == expected
    ties = frame[frame["pair_source"] == TIE]
    assert len(ties) == ROUNDS and (ties["label_0"] == 0.5).all()  # one tied answer per round


def test_consensus_and_jsonl_exports_match_the_database(app, owner, campaign):
    rankings, consensus, _ = _database(app, campaign)
    lines = owner.get(f"/api/campaigns/{campaign}/export?format=consensus.jsonl").data
    rows = [json.loads(line) for line in lines.decode().splitlines()]
    assert [r["round"] for r in rows] == list(range(ROUNDS))
    for row in rows:
        stored = consensus[row["round"]]
        assert row["order"] == stored.order and row["scores"] == stored.scores
        assert row["agreement"] == stored.agreement and row["n_rankings"] == QUORUM
        assert set(row) == set(formats.schema("consensus").names)
    # Krippendorff's alpha per round is the report's (the answers over the candidates).
    from rankloop.commands.report import collect

    report_rounds, _, _ = collect(app.extensions["rankloop_sessionmaker"], campaign)
    assert [r["krippendorff_alpha"] for r in rows] == pytest.approx(
        [r.alpha for r in report_rounds]
    )
    assert all(r["krippendorff_alpha"] is not None for r in rows)
    lines = owner.get(f"/api/campaigns/{campaign}/export?format=rankings.jsonl&images=key").data
    rows = [json.loads(line) for line in lines.decode().splitlines()]
    assert [r["ranking_id"] for r in rows] == [r.id for r in rankings]
    assert all(set(r) == set(formats.schema("rankings").names) for r in rows)
    assert rows[0]["image_refs"] == rows[0]["image_keys"]
    legacy = owner.get(f"/api/campaigns/{campaign}/export").data.decode().splitlines()
    assert len(legacy) == len(rankings)


def test_bad_formats_are_refused(app, owner, campaign):
    for query in ("format=rankings.csv", "format=votes.parquet", "format=pairs.jsonl&images=embed",
                  "format=pairs.parquet&images=inline"):  # fmt: skip
        response = owner.get(f"/api/campaigns/{campaign}/export?{query}")
        assert response.status_code == 400, query


def test_cli_jsonl_export_bundles_images(app, campaign, tmp_path):
    out = tmp_path / "bundle" / "pairs.jsonl"
    result = CliRunner().invoke(export_command, [
        campaign, "--table", "pairs", "--format", "jsonl", "--images", "embed", "--out", str(out),
        "--url", settings_of(app).database_url, "--store", settings_of(app).store_url,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rankings, _, images = _database(app, campaign)
    assert len(rows) == PAIRS_PER_RANKING * len(rankings)
    store = app.extensions["rankloop_store"]
    for row in rows:
        assert row["jpg_0"] is None and row["image_0_ref"].startswith("images/")
        image = images[row["image_0_uid"]]
        assert (out.parent / row["image_0_ref"]).read_bytes() == store.get(image.key)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_round_trip_export_import_same_consensus(app, campaign, tmp_path, fmt):
    out = tmp_path / f"rankings.{fmt}"
    exported = CliRunner().invoke(export_command, [
        campaign, "--format", fmt, "--out", str(out), "--url", settings_of(app).database_url,
    ])  # fmt: skip
    assert exported.exit_code == 0, exported.output
    target = make_app(tmp_path / "target")  # another database
    imported = CliRunner().invoke(
        import_command, [str(out), "--url", settings_of(target).database_url]
    )
    assert imported.exit_code == 0, imported.output
    _, source_consensus, _ = _database(app, campaign)
    again = rerun(target.extensions["rankloop_sessionmaker"], campaign)
    assert [c.round for c in again] == sorted(source_consensus)
    for result in again:
        stored = source_consensus[result.round]
        assert result.order == stored.order and result.method == stored.method
        assert result.scores == pytest.approx(stored.scores, abs=1e-9)
        assert result.weights == pytest.approx(stored.weights, abs=1e-9)
    copied, copied_consensus, _ = _database(target, campaign)
    original, _, _ = _database(app, campaign)
    assert [(r.annotator_id, r.order, r.positions) for r in copied] == [
        (r.annotator_id, r.order, r.positions) for r in original
    ]
    assert {n: c.order for n, c in copied_consensus.items()} == {
        n: c.order for n, c in source_consensus.items()
    }
    db.get_engine(target).dispose()


def test_pairs_rule():
    assert list(ranking_pairs([2, 0, 1], [0, 1, 2])) == [
        (0, 2, 0.0, RANKED), (1, 2, 0.0, RANKED), (0, 1, 1.0, RANKED),
    ]  # fmt: skip
    # a tie, the attention item (3) dropped, a candidate (4) left unranked by top-k
    pairs = list(ranking_pairs([[1, 0], 3, 2], [0, 1, 2, 4]))
    assert (0, 1, 0.5, TIE) in pairs and (0, 2, 1.0, RANKED) in pairs
    assert (2, 4, 1.0, OVER_UNRANKED) in pairs and (1, 4, 1.0, OVER_UNRANKED) in pairs
    assert all(3 not in (p.first, p.second) for p in pairs) and len(pairs) == 6


def test_report_writes_png_and_markdown(app, campaign, tmp_path):
    from rankloop.commands.report import collect, report_command

    result = CliRunner().invoke(
        report_command,
        [campaign, "--out", str(tmp_path), "--url", settings_of(app).database_url,
         "--store", settings_of(app).store_url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figure = PILImage.open(tmp_path / f"report-{campaign}.png")
    assert figure.size[0] >= 1200  # a figure for a page, not a thumbnail
    assert (tmp_path / f"report-{campaign}.pdf").read_bytes().startswith(b"%PDF")
    text = (tmp_path / f"report-{campaign}.md").read_text()
    assert f"report-{campaign}.png" in text
    # The verdict leads (this campaign asked for none yet), then the improvement curve.
    assert text.splitlines()[2].startswith("**The crowd's verdict:** no verdict yet")
    assert text.splitlines()[4].startswith("Strength of each round's best image")
    rounds, annotators, alpha = collect(app.extensions["rankloop_sessionmaker"], campaign)
    _, consensus, _ = _database(app, campaign)
    # Kendall's W over the candidates is the agreement each round's consensus recorded.
    assert [r.kendall_w for r in rounds] == pytest.approx(
        [consensus[r.round].agreement for r in rounds]
    )
    assert alpha is not None and -1.0 <= alpha < 1.0  # one answer is reversed: no perfect accord
    assert sum(a.rankings for a in annotators.values()) == QUORUM * ROUNDS
    assert sum(a.attention_failed for a in annotators.values()) == ROUNDS  # the reversed one
    for number in range(ROUNDS):
        assert f"| {number} | {QUORUM} |" in text


def test_consensus_pairs_follow_each_rounds_consensus(app, owner, campaign, tmp_path):
    response = owner.get(f"/api/campaigns/{campaign}/export?format=consensus_pairs.parquet")
    assert response.status_code == 200
    path = tmp_path / "consensus_pairs.parquet"
    path.write_bytes(response.data)
    frame, _ = _load_both_ways(path, tmp_path)
    _, consensus, images = _database(app, campaign)
    assert len(frame) == PAIRS_PER_RANKING * ROUNDS and set(frame["user_id"]) == {0}
    assert set(frame["num_example_per_prompt"]) == {len(frame)}
    assert set(frame["annotator_id"]) == {"consensus"} and frame["ranking_id"].isna().all()
    for row in frame.itertuples():
        order = consensus[row.round].order  # positions, best first
        first, second = images[row.image_0_uid], images[row.image_1_uid]
        better = first if order.index(first.position) < order.index(second.position) else second
        assert row.best_image_uid == better.id and row.weight == consensus[row.round].agreement


def test_column_shortcuts_give_what_the_python_lists_give():
    """The export's shortcuts: orders without ties built in Arrow from flat values and offsets,
    a value repeated in every row, and one JSON parse per batch, each against the plain path."""
    pa = pytest.importorskip("pyarrow")
    from service.datasets.rows import Groups, Repeat
    from service.datasets.source import _json_all

    order_type = formats.schema("rankings").field("order").type
    positions_type = formats.schema("rankings").field("positions").type
    orders, flat = _json_all(('["b", "a", "c"]', '["c", "b", "a"]', "[]", '["a"]'))
    assert flat and orders[0] == ["b", "a", "c"]
    fast = Groups(orders, flat=True)
    assert fast.to_list() == [[["b"], ["a"], ["c"]], [["c"], ["b"], ["a"]], [], [["a"]]]
    assert fast.to_arrow(order_type).equals(pa.array(fast.to_list(), order_type))
    assert fast[1:3].to_arrow(order_type).equals(pa.array(fast.to_list()[1:3], order_type))
    assert fast.n_ranked() == [3, 3, 0, 1] and fast.ties() == [False] * 4
    positions, flat = _json_all(("[2, 0, 1]", "[1, 0, 2]"))
    assert flat and Groups(positions, True).to_arrow(positions_type).equals(
        pa.array([[[2], [0], [1]], [[1], [0], [2]]], positions_type)
    )
    # A tie anywhere in the batch takes the plain path, as does an already decoded column.
    for stored in (('[["b", "a"], "c"]', '["a", "b"]'), ([["b", "a"], "c"], ["a", "b"])):
        tied, flat = _json_all(stored)
        assert not flat and tied == [[["b", "a"], "c"], ["a", "b"]]
        slow = Groups(tied, flat)
        assert slow.to_list() == [[["b", "a"], ["c"]], [["a"], ["b"]]]
        assert slow.n_ranked() == [3, 2] and slow.ties() == [True, False]
    assert _json_all((["a"], ["b", "c"])) == ([["a"], ["b", "c"]], True)
    for value, type_ in ((["x", "y"], pa.list_(pa.string())), (None, pa.string()), (7, pa.int64())):
        repeated = Repeat(value, 5)
        assert repeated.to_list() == [value] * 5 and len(repeated[1:4]) == 3
        assert repeated.to_arrow(type_).equals(pa.array([value] * 5, type_))


def test_pairs_and_consensus_pairs_concatenate_with_the_same_dtypes(owner, campaign, tmp_path):
    """The two pairs tables read with the same dtypes (ranking_id and attention_passed nullable,
    not an all-null float or object), so that concatenating them keeps every column's type."""
    import pandas as pd

    frames = []
    for table in ("pairs", "consensus_pairs"):
        response = owner.get(f"/api/campaigns/{campaign}/export?format={table}.parquet")
        path = tmp_path / f"{table}.parquet"
        path.write_bytes(response.data)
        frames.append(pd.read_parquet(path))
    pairs, consensus = frames
    assert pairs.dtypes.to_dict() == consensus.dtypes.to_dict()
    assert str(pairs["ranking_id"].dtype) == "Int64" and str(pairs["user_id"].dtype) == "int64"
    both = pd.concat(frames, ignore_index=True)
    assert both.dtypes.to_dict() == pairs.dtypes.to_dict()
    assert both["ranking_id"].isna().sum() == len(consensus)


def test_user_number_is_stable_positive_and_not_the_consensus():
    assert user_number("0f3a9c2b1d4e5f60") == user_number("0f3a9c2b1d4e5f60")
    numbers = {user_number(f"{i:016x}") for i in range(10_000)}
    assert len(numbers) == 10_000 and CONSENSUS_USER_ID not in numbers
    assert all(0 < n < 2**63 for n in numbers)
    # Fixed by the digest, not by the run: a dataset exported again maps the same way.
    assert user_number("annotator-1") == 119211107859112196


def test_embedded_pairs_store_each_image_once_per_row_group():
    """Image bytes in the pairs table: a dictionary of the row group's distinct images, never a
    copy per pair (pyarrow's own dictionary gives up past 1 MB and stores one per row), and the
    file still reads as the plain schema (binary columns, the pandas dtypes)."""
    pq = pytest.importorskip("pyarrow.parquet")
    from service.datasets.rows import Batch, Embedded, Images

    blobs = {f"k{i}": os.urandom(200_000) for i in range(8)}
    images = Images("embed", get=blobs.__getitem__)
    rows = 3 * formats.PAIRS_EMBEDDED_ROW_GROUP
    columns: dict = {name: [None] * rows for name in formats.schema("pairs").names}
    columns.update(
        caption=["a prompt"] * rows,
        jpg_0=Embedded([f"k{i % 8}" for i in range(rows)], images),
        jpg_1=Embedded([f"k{(i * 3 + 1) % 8}" for i in range(rows)], images),
    )
    data = b"".join(formats.parquet_chunks([Batch(columns, rows, rows)], "pairs", embedded=True))
    file = pq.ParquetFile(io.BytesIO(data))
    assert file.num_row_groups == 3
    # Three row groups, two columns, eight images of 200 kB each: 9.6 MB (a copy per row: 307 MB).
    assert len(data) < 3 * 2 * 8 * 200_000 * 1.05
    assert file.schema_arrow.remove_metadata().equals(formats.schema("pairs").remove_metadata())
    kept = pq.read_table(io.BytesIO(data), read_dictionary=["jpg_0", "jpg_1"])
    first = kept.column("jpg_0").chunk(0)
    assert [first.dictionary[i].as_py() for i in first.indices[:9].to_pylist()] == [
        blobs[f"k{i % 8}"] for i in range(9)
    ]
    frame = pq.read_table(io.BytesIO(data), columns=["ranking_id", "attention_passed"]).to_pandas()
    assert str(frame["ranking_id"].dtype) == "Int64"
