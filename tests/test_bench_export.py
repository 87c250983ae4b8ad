"""``rankloop bench export`` end to end on a small synthetic campaign: the database it builds
reads back as the rankings it meant (a random full order of the candidates, the attention image
last), and the export it times wrote every row within its memory cap."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rankloop.bench.export import TARGET_MB, M, build, export_command


def test_the_synthetic_campaign_reads_back_through_the_export_source(tmp_path):
    from service import datasets

    url = f"sqlite:///{tmp_path}/bench.sqlite"
    campaign_id = build(url, 25, per_round=10)
    sessions, dispose = datasets.sessions_for(url)
    try:
        source = datasets.CampaignSource(sessions, campaign_id)
        rankings = list(source.rankings())
    finally:
        dispose()
    assert len(source.round_ids) == 3 and len(rankings) == 25
    assert [r.id for _, r in rankings] == list(range(1, 26))
    for round_, ranking in rankings:
        ids = [i.id for i in round_.images]
        assert sorted(ranking.positions[:-1]) == list(range(M)) and ranking.positions[-1] == M
        assert ranking.order == [ids[p] for p in ranking.positions]
        assert ranking.leased_at == ranking.submitted_at and round_.weight(ranking.annotator_id)


@pytest.mark.slow
def test_bench_export_writes_every_row_under_the_memory_cap(tmp_path):
    out = tmp_path / "export.json"
    result = CliRunner().invoke(
        export_command, ["--rankings", "3000", "--per-round", "700", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["rows"]
    assert row["rankings"] == row["rows"] == 3000
    assert 0 < row["peak_mb"] < TARGET_MB


@pytest.mark.slow
def test_bench_export_embeds_the_images_once_per_row_group(tmp_path):
    out = tmp_path / "embed.json"
    result = CliRunner().invoke(
        export_command,
        ["--images", "embed", "--rankings", "600", "--per-round", "300", "--image-kb", "20",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["rows"]
    assert row["table"] == "pairs" and row["rows"] == 600 * M * (M - 1) // 2
    # A copy per pair would be 2 x 16,800 x 20 kB; a dictionary per row group is a fraction.
    assert row["dataset_mb"] < row["copy_per_pair_mb"] / 10
    result = CliRunner().invoke(export_command, ["--images", "embed", "--table", "rankings"])
    assert result.exit_code == 2 and "pairs table" in result.output
