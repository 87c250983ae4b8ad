"""``rankloop bench study`` runs end to end on a tiny crowd: both runs, every 201 stored, in
process (the lite version) and on the full stack (gunicorn, Celery workers and beat, PostgreSQL,
Redis, the waiting streams)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rankloop.bench.study import quorum_settings, study_command
from tests.fixtures.services import POSTGRES_ADMIN_URL

TINY = ["--prompts", "2", "--rounds", "1", "--workers", "4", "--quorum", "fixed:2",
        "--limit-s", "120", "--abandon", "0", "--leave", "0",
        "--postgres", POSTGRES_ADMIN_URL]  # fmt: skip


def test_a_quorum_reads_as_the_campaign_settings_it_means():
    assert quorum_settings("fixed:3") == {"quorum": "fixed", "annotators_per_round": 3}
    assert quorum_settings("3") == {"quorum": "fixed", "annotators_per_round": 3}
    adaptive = quorum_settings("adaptive:2-5")
    assert adaptive["quorum"] == "adaptive"
    assert (adaptive["min_annotators_per_round"], adaptive["annotators_per_round"]) == (2, 5)


def test_a_bad_quorum_is_refused_by_name():
    result = CliRunner().invoke(study_command, ["--quorum", "sometimes"])
    assert result.exit_code == 2
    assert "--quorum" in result.output


@pytest.mark.slow
def test_the_lite_study_benchmark_runs_and_loses_no_ranking(postgres_url, tmp_path):
    out = tmp_path / "study.json"
    args = [*TINY, "--stack", "inprocess", "--time-scale", "0.005", "--render-s", "0.1",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(study_command, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["study", "campaigns"]
    assert all(r["responses_201"] == r["rankings_stored"] for r in rows)
    assert rows[0]["rounds_closed"] == 2  # the study's crowd finished every round


@pytest.mark.slow
def test_the_full_study_benchmark_serves_streams_and_loses_no_ranking(
    postgres_url, redis_url, tmp_path
):
    out = tmp_path / "study.json"
    args = [*TINY, "--time-scale", "0.01", "--redis", redis_url, "--out", str(out)]
    result = CliRunner().invoke(study_command, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["study", "campaigns"]
    for row in rows:
        assert row["rounds_closed"] == 2, row  # both crowds finished both rounds
        assert row["responses_201"] == row["rankings_stored"] == 4
        assert row["rankings_lost"] == row["missing_from_export"] == 0
        # Every worker waited for the start with a stream of the stream process (no cap there).
        assert row["streams_held"] >= 4 and row["streams_refused"] == 0, row
        assert all(url.startswith("http://127.0.0.1:") for url in row["stream_urls"]), row
        assert row["notified"] > 0  # rounds opened while workers waited, and they were told
        assert 0.0 <= row["idle_share"] <= 1.0
    assert (tmp_path / "study.png").stat().st_size > 0
