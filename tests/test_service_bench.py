"""``rankloop bench api --quick`` runs end to end and accounts for every ranking."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rankloop.bench.api import api_command


@pytest.mark.bench
@pytest.mark.slow
def test_bench_api_quick_accounts_for_every_ranking(tmp_path, postgres_url):
    out = tmp_path / "api.json"
    result = CliRunner().invoke(api_command, ["--quick", "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    document = json.loads(out.read_text())
    meta, rows = document["meta"], {row["what"]: row for row in document["rows"]}
    assert meta["rankings_acknowledged"] > 0
    assert meta["acknowledged_missing_from_db"] == 0 and meta["duplicated"] == 0
    assert meta["none_lost_or_duplicated"] is True
    assert rows["POST ranking (submissions)"]["failures"] == 0
    assert rows["bare gunicorn POST"]["requests"] > 0
    assert rows["turnaround: render done -> round open"]["requests"] == 3
    assert rows["turnaround: ranking in -> render enqueued"]["requests"] == 3
