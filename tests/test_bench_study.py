"""``rankloop bench study`` runs end to end on a tiny crowd: both runs, every 201 stored."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rankloop.bench.study import study_command
from tests.fixtures.services import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.slow


def test_the_study_benchmark_runs_and_loses_no_ranking(postgres_url, tmp_path):
    out = tmp_path / "study.json"
    args = ["--prompts", "2", "--rounds", "1", "--workers", "4", "--quorum", "2",
            "--time-scale", "0.005", "--render-s", "0.1", "--limit-s", "60", "--abandon", "0", "--leave", "0",
            "--postgres", POSTGRES_ADMIN_URL, "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(study_command, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["study", "campaigns"]
    assert all(r["responses_201"] == r["rankings_stored"] for r in rows)
    assert rows[0]["rounds_closed"] == 2  # the study's crowd finished every round
