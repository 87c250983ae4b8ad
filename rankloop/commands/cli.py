"""The ``rankloop`` command line.

Subcommands live beside the code they drive and are imported only when invoked, so that
``rankloop up`` never imports torch and ``rankloop --help`` stays fast.
"""

from __future__ import annotations

import importlib

import click

from rankloop import __version__
from rankloop.commands.errors import explain


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


class CommandLine(LazyGroup):
    """The root group: any failure below it becomes one line and exit status 1 (usage errors
    keep click's status 2), unless ``--debug`` asks for the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(explain(exc)) from exc


@click.group(
    cls=CommandLine,
    lazy_subcommands={
        "up": "rankloop.commands.up:up_command",
        "serve": "rankloop.commands.serve:serve_command",
        "db": "service.cli:db_group",
        "simulate": "rankloop.commands.simulate:simulate_command",
        "bench": "rankloop.bench:bench_group",
        "export": "rankloop.commands.export:export_command",
        "import": "rankloop.commands.export:import_command",
        "import-images": "rankloop.commands.import_images:import_images_command",
        "replay": "rankloop.commands.replay:replay_command",
        "fork": "rankloop.commands.fork:fork_command",
        "report": "rankloop.commands.report:report_command",
        "streams": "rankloop.commands.streams:streams_command",
    },
)
@click.version_option(__version__, prog_name="rankloop")
@click.option("--debug", is_flag=True, help="On failure, show the traceback.")
def main(debug: bool) -> None:
    """rankloop: steer an image generator by crowd rankings (ZO-RankSGD).

    A failure prints one line (what is wrong, what to do) and exits with 1; bad usage exits
    with 2.
    """


if __name__ == "__main__":
    main()
