"""``rankloop export`` and ``rankloop import``: a campaign's preference data in and out of a
database, with a progress bar. The formats are :mod:`service.datasets`'s (docs/guides/datasets.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from rankloop.commands.errors import CampaignId, atomic_output
from rankloop.core.settings import load_settings
from service.datasets import FORMATS, IMAGE_MODES, TABLES

DATABASE_HELP = "SQLAlchemy URL (default: RANKLOOP_DATABASE_URL or var/rankloop.sqlite)"


def open_store(store_url: str | None):
    """The object store at ``store_url``, else the configured one (``RANKLOOP_STORE_URL``)."""
    from rankloop.stores import store_from_config

    settings = load_settings()
    return store_from_config(
        settings.model_copy(update={"store_url": store_url}) if store_url else settings
    )


@click.command("export")
@click.argument("campaign_id", type=CampaignId())
@click.option("--table", type=click.Choice(list(TABLES)),
              default="rankings", show_default=True)  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="parquet",
              show_default=True)  # fmt: skip
@click.option("--images", type=click.Choice(list(IMAGE_MODES)), default="key",
              show_default=True,
              help="embed: bytes in the Parquet rows, or an images/ folder beside a JSONL file")  # fmt: skip
@click.option("--base-url", help="with --images url, where the coordinator serves /objects/")
@click.option(
    "--out", type=click.Path(path_type=Path), help="default: rankloop-<id>-<table>.<format>"
)
@click.option("--url", help=DATABASE_HELP)
@click.option("--store", "store_url", help="object store (default: RANKLOOP_STORE_URL)")
def export_command(campaign_id: str, table: str, fmt: str, images: str, base_url: str | None,
                   out: Path | None, url: str | None, store_url: str | None) -> None:  # fmt: skip
    """Export a campaign's rankings, consensus or pairwise preferences (streamed)."""
    from service import datasets
    from service.cli import database_url

    out = out or Path(f"rankloop-{campaign_id}-{table}.{fmt}")
    sessions, dispose = datasets.sessions_for(database_url(url))
    try:
        source = datasets.CampaignSource(sessions, campaign_id)
        total = len(source.round_ids) if table.startswith("consensus") else source.count_rankings()
        store = open_store(store_url) if images != "key" else None

        def by_url(key: str) -> str:
            assert store is not None
            presigned = store.url(key, 7 * 24 * 3600)
            if presigned:
                return presigned
            if not base_url:
                raise click.UsageError("--images url with a local store needs --base-url")
            return f"{base_url.rstrip('/')}/objects/{key}"

        policy = datasets.Images(
            images,
            get=store.get if store is not None else None,
            url=by_url if store is not None else None,
            folder=out.parent if fmt == "jsonl" else None,
        )
        label = f"{table} of {campaign_id}"
        with (
            atomic_output(out) as partial,
            click.progressbar(length=total, label=label) as bar,
            partial.open("wb") as file,
        ):
            for chunk in datasets.export(source, table, fmt, policy, progress=bar.update):
                file.write(chunk)
    finally:
        dispose()
    click.echo(f"wrote {out}")


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", help=DATABASE_HELP)
@click.option("--consensus", "method", default=None,
              help="compute each round's consensus with this method (default: the campaign's)")  # fmt: skip
def import_command(path: Path, url: str | None, method: str | None) -> None:
    """Recreate a campaign from its rankings export, then compute its consensus again."""
    from rankloop.core.consensus import METHODS
    from service import datasets
    from service.cli import database_url
    from service.datasets.importer import count_rows, import_rankings, read_rows
    from service.datasets.reconsensus import recompute

    if method is not None and method not in METHODS:
        raise click.BadParameter(f"use one of {', '.join(METHODS)}", param_hint="--consensus")
    sessions, dispose = datasets.sessions_for(database_url(url))
    try:
        with click.progressbar(label=f"rankings from {path.name}", length=count_rows(path)) as bar:
            campaign_id, rounds = import_rankings(
                sessions, read_rows(path), progress=bar.update,
                then=lambda session, campaign_id: recompute(session, campaign_id, method, save=True),
            )  # fmt: skip
    finally:
        dispose()
    for r in rounds or []:
        agreement = "-" if r.agreement is None else f"{r.agreement:.3f}"
        click.echo(f"round {r.round}: {r.method} order {r.order} agreement {agreement}")
    click.echo(f"imported campaign {campaign_id} ({len(rounds or [])} rounds with rankings)")
