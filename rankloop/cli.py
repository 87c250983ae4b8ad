"""The ``rankloop`` command line.

Subcommands live beside the code they drive and are imported only when invoked, so that
``rankloop up`` never imports torch and ``rankloop --help`` stays fast.
"""

from __future__ import annotations

import importlib

import click

from rankloop import __version__


class LazyGroup(click.Group):
    """A click group whose subcommands are ``"module:attribute"`` strings imported on use."""

    def __init__(self, *args, lazy_subcommands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            module_name, attribute = self.lazy_subcommands[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attribute)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    lazy_subcommands={
        "up": "rankloop.up:up_command",
        "serve": "rankloop.serve:serve_command",
        "db": "service.cli:db_group",
        "simulate": "rankloop.simulate:simulate_command",
        "bench": "rankloop.bench:bench_group",
        "export": "rankloop.export:export_command",
        "import": "rankloop.export:import_command",
        "replay": "rankloop.replay:replay_command",
        "fork": "rankloop.fork:fork_command",
        "report": "rankloop.report:report_command",
    },
)
@click.version_option(__version__, prog_name="rankloop")
def main() -> None:
    """rankloop: steer an image generator by crowd rankings (ZO-RankSGD)."""


if __name__ == "__main__":
    main()
