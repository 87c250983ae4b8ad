"""Benchmarks: ``rankloop bench optimizer|consensus|campaign|render|api|export|import-images|study|respawn|streams``.

Each prints a table and saves JSON (``--out``), comparing methods side by side in one run.
"""

import click

from rankloop.commands.cli import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy_subcommands={
        "optimizer": "rankloop.bench.optimizer:optimizer_command",
        "consensus": "rankloop.bench.consensus:consensus_command",
        "campaign": "rankloop.bench.campaign:campaign_command",
        "render": "rankloop.bench.render:render_command",
        "api": "rankloop.bench.api:api_command",
        "export": "rankloop.bench.export:export_command",
        "import-images": "rankloop.bench.import_images:import_images_command",
        "study": "rankloop.bench.study:study_command",
        "respawn": "rankloop.bench.respawn:respawn_command",
        "streams": "rankloop.bench.streams:streams_command",
    },
)
def bench_group() -> None:
    """Run a benchmark; prints a table and saves JSON."""
