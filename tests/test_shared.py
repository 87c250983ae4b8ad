"""The pieces every tier shares: the error hierarchy, the benchmark report, the lazy CLI."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from rankloop import __version__
from rankloop.bench.report import format_table, save_results
from rankloop.commands.cli import LazyGroup, main
from rankloop.core import errors


def test_every_error_derives_from_rankloop_error_and_its_builtin():
    assert issubclass(errors.InvalidInput, ValueError)
    assert issubclass(errors.NotFound, LookupError)
    assert issubclass(errors.CorruptedObject, OSError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.RankloopError)


def test_error_statuses_are_client_errors_where_the_client_is_at_fault():
    for cls in (errors.InvalidInput, errors.NotFound, errors.Conflict, errors.Gone):
        assert 400 <= cls.http_status < 500
    assert errors.Gone.http_status == 410


def test_format_table_aligns_columns_and_rounds_floats():
    text = format_table([{"method": "a", "tau": 0.123456}, {"method": "longer", "tau": 1.0}])
    lines = text.splitlines()
    assert lines[0].split() == ["method", "tau"]
    assert set(lines[1]) <= {"-", " "}
    assert "0.1235" in lines[2]
    assert lines[0].index("tau") == lines[2].index("0.1235") == lines[3].index("1")


def test_save_results_writes_rows_and_meta(tmp_path):
    path = save_results(tmp_path / "x" / "bench.json", "demo", [{"a": 1}], seeds=3)
    document = json.loads(path.read_text())
    assert document["benchmark"] == "demo"
    assert document["rows"] == [{"a": 1}]
    assert document["meta"] == {"seeds": 3}


def test_lazy_group_imports_subcommands_only_when_asked():
    @click.group(cls=LazyGroup, lazy_subcommands={"ver": "rankloop.commands.cli:main"})
    def group():
        pass

    assert group.list_commands(click.Context(group)) == ["ver"]
    result = CliRunner().invoke(group, ["ver", "--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"rankloop, version {__version__}"


def test_main_command_answers_with_its_version_and_its_subcommands():
    version = CliRunner().invoke(main, ["--version"])
    assert version.exit_code == 0, version.output
    assert version.output.strip() == f"rankloop, version {__version__}"
    usage = CliRunner().invoke(main, ["--help"])
    assert usage.exit_code == 0, usage.output
    listed = usage.output.split("Commands:", 1)[1].split()
    assert {"up", "serve", "db", "simulate", "bench"} <= set(listed)
