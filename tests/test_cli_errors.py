"""The command line answers bad input with one line and an exit status, never a traceback:
2 for usage, 1 for a failure, no half-written output file or half-imported campaign, and the
traceback only under ``rankloop --debug``. Each case runs through the real ``rankloop`` group
on SQLite and a local store.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from rankloop.commands.cli import main
from rankloop.core.errors import NotFound
from rankloop.core.settings import settings_of
from service import db
from service.models import Campaign, Ranking
from tests.fixtures.coordinator import Owner, bearer, render_round

M = 3


def run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result, status: int, fragment: str) -> None:
    """The command failed with ``status`` and said so in one line holding ``fragment``."""
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], result.output
    assert result.output.rstrip().endswith(errors[0])  # the last word is the error


@pytest.fixture
def finished(sqlite_app) -> str:
    """A finished one-round campaign with two rankings."""
    owner = Owner(sqlite_app.test_client())
    created = owner.campaign(start=True, m=M, annotators_per_round=2, rounds=1,
                             tasks_per_annotator=1)  # fmt: skip
    render_round(sqlite_app, created["id"], 0, m=M)
    client = sqlite_app.test_client()
    for token in owner.annotators(created["id"], 2):
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        order = [i["id"] for i in task["images"]]
        posted = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                             headers=bearer(token))  # fmt: skip
        assert posted.status_code == 201, posted.json
    return created["id"]


@pytest.fixture
def url(sqlite_app) -> str:
    return settings_of(sqlite_app).database_url


def _export(campaign: str, url: str, out: Path, fmt: str = "jsonl") -> list[dict]:
    result = run("export", campaign, "--format", fmt, "--out", out, "--url", url)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()] if fmt == "jsonl" else []


def _campaigns(url: str) -> int:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(Campaign)) or 0)
    finally:
        engine.dispose()


def test_a_campaign_id_that_walks_a_path_is_a_usage_error(url, tmp_path):
    for command in ("export", "report", "replay"):
        extra = ["--round", "0"] if command == "replay" else []
        one_line_error(run(command, "../../etc", *extra, "--url", url), 2, "not a campaign id")
    one_line_error(run("fork", "../../etc", "--round", "0"), 2, "not a campaign id")


def test_an_unknown_campaign_is_a_failure(url, tmp_path):
    out = tmp_path / "out"
    one_line_error(run("export", "abc", "--url", url, "--out", out / "x.parquet"), 1,
                   "no campaign or study 'abc'")  # fmt: skip
    one_line_error(run("report", "abc", "--url", url, "--out", out), 1, "no campaign 'abc'")
    one_line_error(run("replay", "abc", "--round", "0", "--url", url), 1, "abc")
    assert not out.exists() or not list(out.iterdir())  # no output, not even a partial one


def test_a_missing_database_is_named_with_the_upgrade_and_not_created(tmp_path):
    missing = tmp_path / "nowhere.sqlite"
    for args in (("export", "abc"), ("report", "abc"), ("replay", "abc", "--round", "0")):
        result = run(*args, "--url", f"sqlite:///{missing}")
        one_line_error(result, 1, "rankloop db upgrade")
    assert not missing.exists()


def test_a_database_without_tables_is_named_with_the_upgrade(tmp_path):
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    one_line_error(run("export", "abc", "--url", f"sqlite:///{empty}"), 1, "rankloop db upgrade")
    path = tmp_path / "export.jsonl"
    path.write_text("{}\n")
    one_line_error(run("import", path, "--url", f"sqlite:///{empty}"), 1, "rankloop db upgrade")


def test_an_unreachable_database_is_one_line(tmp_path):
    result = run("export", "abc", "--url", "postgresql://nobody@127.0.0.1:1/none")
    one_line_error(result, 1, "cannot use the database")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"", "not a Parquet file"), (b"PAR1 no footer here", "not a Parquet file")],
)
def test_an_empty_or_foreign_parquet_file_is_refused(url, tmp_path, content, fragment):
    path = tmp_path / "rankings.parquet"
    path.write_bytes(content)
    one_line_error(run("import", path, "--url", url), 1, fragment)


def test_a_parquet_file_without_the_columns_is_refused(url, tmp_path):
    path = tmp_path / "rankings.parquet"
    pq.write_table(pa.table({"prompt": ["a fig"]}), path)
    one_line_error(run("import", path, "--url", url), 1, "not a rankings export")


def test_a_malformed_row_is_named_and_nothing_is_imported(sqlite_app, finished, url, tmp_path):
    rows = _export(finished, url, tmp_path / "good.jsonl")
    assert len(rows) == 2
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    assert run("db", "upgrade", "--url", target).exit_code == 0
    first = rows[1]["order"][0]
    for column, value, fragment in [
        ("order", [first, [float("nan")]], "row 2: order"),
        ("order", [first, ["not-an-image"]], "row 2: order must name distinct images"),
        ("positions", [[0], [99]], "row 2: positions must name distinct images"),
        ("round", -1, "row 2: round"),
        ("submitted_at", "yesterday", "row 2: submitted_at"),
    ]:
        broken = [rows[0], {**rows[1], column: value}]
        path = tmp_path / "broken.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in broken))
        one_line_error(run("import", path, "--url", target), 1, fragment)
        assert _campaigns(target) == 0  # row 1 was valid: all or nothing
    path.write_text(json.dumps(rows[0]) + "\nnot json\n")
    one_line_error(run("import", path, "--url", target), 1, "line 2: not JSON")
    assert _campaigns(target) == 0
    good = tmp_path / "good.jsonl"
    assert run("import", good, "--url", target).exit_code == 0
    engine = db.make_engine(target)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Ranking)) == 2
    engine.dispose()
    one_line_error(run("import", good, "--url", target), 1, "already in this database")


def test_a_failed_export_leaves_no_file_and_keeps_an_older_one(finished, url, tmp_path):
    out = tmp_path / "exports" / "pairs.parquet"
    out.parent.mkdir()
    out.write_bytes(b"an older export")
    empty_store = tmp_path / "no-objects"
    empty_store.mkdir()
    result = run("export", finished, "--table", "pairs", "--images", "embed", "--out", out,
                 "--url", url, "--store", empty_store)  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert out.read_bytes() == b"an older export"
    assert [p.name for p in out.parent.iterdir()] == ["pairs.parquet"]


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "export", "abc", "--url", f"sqlite:///{tmp_path / 'none.sqlite'}")
    assert result.exit_code == 1 and isinstance(result.exception, NotFound)


def test_a_database_without_tables_in_a_coordinator_command(tmp_path, monkeypatch):
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    monkeypatch.setenv("RANKLOOP_DATABASE_URL", f"sqlite:///{empty}")
    monkeypatch.setenv("RANKLOOP_STORE_URL", str(tmp_path / "objects"))
    monkeypatch.setenv("RANKLOOP_BROKER_URL", "memory://")
    one_line_error(run("fork", "abc", "--round", "0"), 1, "rankloop db upgrade")


@pytest.fixture(params=["sqlite", "postgresql"])
def url_without_tables(request, tmp_path) -> str:
    """A database that was never upgraded: a new SQLite file, or a PostgreSQL schema of its own
    (the session's database, searched through an empty schema)."""
    if request.param == "sqlite":
        sqlite3.connect(tmp_path / "empty.sqlite").close()
        return f"sqlite:///{tmp_path / 'empty.sqlite'}"
    import psycopg

    base = request.getfixturevalue("postgres_url")
    schema = f"empty_{tmp_path.name[-20:].lower().replace('-', '_')}"
    with psycopg.connect(base.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return f"{base}?options=-csearch_path%3D{schema}"


def test_the_api_and_the_commands_name_the_upgrade_on_a_database_without_tables(
    url_without_tables, tmp_path
):
    from service.app import create_app

    app = create_app({"DATABASE_URL": url_without_tables, "STORE_URL": str(tmp_path / "objects"),
                      "BROKER_URL": "memory://", "ADMIN_TOKEN": "owner"})  # fmt: skip
    response = app.test_client().get("/api/campaigns", headers=bearer("owner"))
    assert response.status_code == 503, response.json
    assert "rankloop db upgrade" in response.json["error"]["message"]
    db.get_engine(app).dispose()
    one_line_error(run("export", "abc", "--url", url_without_tables), 1, "rankloop db upgrade")


def test_an_import_whose_consensus_fails_imports_nothing(finished, url, tmp_path, monkeypatch):
    good = tmp_path / "good.jsonl"
    _export(finished, url, good)
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    assert run("db", "upgrade", "--url", target).exit_code == 0
    one_line_error(run("import", good, "--url", target, "--consensus", "borda!"), 2, "--consensus")
    from rankloop.core.errors import ConvergenceError
    from service.datasets import reconsensus

    def diverges(*args, **kwargs):
        raise ConvergenceError("the scores did not converge")

    monkeypatch.setattr(reconsensus, "round_consensus", diverges)
    one_line_error(run("import", good, "--url", target), 1, "did not converge")
    assert _campaigns(target) == 0  # the rankings went back with the consensus
    monkeypatch.undo()
    imported = run("import", good, "--url", target)
    assert imported.exit_code == 0 and "imported campaign" in imported.output, imported.output


def test_the_upgrade_hint_hides_a_password():
    from service.db import upgrade_hint

    hint = upgrade_hint("postgresql+psycopg://lab:s3cret@db.example.org/rankloop")
    assert "s3cret" not in hint and "rankloop db upgrade --url" in hint


def test_system_errors_read_as_one_plain_line():
    from rankloop.commands.errors import explain

    assert explain(FileNotFoundError(2, "No such file or directory", "/data/x.parquet")) == (
        "No such file or directory: /data/x.parquet"
    )
    assert explain(OSError(98, "Address already in use")) == "Address already in use"
    assert "--debug" in explain(RuntimeError("boom"))
