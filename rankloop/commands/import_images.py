"""``rankloop import-images SOURCE``: the owner's own images as an image-set campaign (one round
per item, no optimizer), from a folder tree, a zip, a CSV, JSON lines or Parquet table, or a
Hugging Face ``datasets`` folder (:mod:`service.image_sets.reading` says how each is laid out).
All or nothing: a malformed item is reported with its line and no campaign or round is created;
or, with ``--skip-bad-rows``, the good items are imported and each skipped one is printed (its
line, its item id, why) to standard error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rankloop.commands.errors import CampaignId
from rankloop.commands.export import DATABASE_HELP, open_store

if TYPE_CHECKING:  # the service loads when the command runs, not when the CLI starts
    from service.image_sets.importer import Skipped


def _setting(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r}: use NAME=VALUE", param_hint="--set")
    try:
        value = json.loads(raw)  # numbers, true/false, null
    except ValueError:
        value = raw
    return name.strip(), value


@click.command("import-images")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--campaign", "campaign_id", type=CampaignId(),
              help="add the items to this draft image set instead of creating one")  # fmt: skip
@click.option("--name", help="the new campaign's name (default: the source's)")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="a campaign setting, e.g. --set annotators_per_round=5 --set k=2")  # fmt: skip
@click.option("--start", is_flag=True, help="start the campaign once the items are in")
@click.option("--skip-bad-rows", is_flag=True,
              help="import the good items and report the malformed ones (default: a malformed "
                   "item refuses the whole import)")  # fmt: skip
@click.option("--url", help=DATABASE_HELP)
@click.option("--store", "store_url", help="object store (default: RANKLOOP_STORE_URL)")
def import_images_command(source: Path, campaign_id: str | None, name: str | None,
                          sets: tuple[str, ...], start: bool, skip_bad_rows: bool,
                          url: str | None, store_url: str | None) -> None:  # fmt: skip
    """Import a folder, zip, table or Hugging Face datasets folder of images as an image-set
    campaign (or into one)."""
    from service import datasets, lifecycle
    from service.cli import database_url
    from service.image_sets.importer import import_items
    from service.image_sets.reading import items_of
    from service.models import Campaign
    from service.schemas import CampaignCreate, validate
    from service.transitions import audit

    settings = dict(_setting(s) for s in sets)
    if campaign_id is not None and (settings or name):
        raise click.UsageError("--campaign adds items to a campaign as it is: no --set or --name")
    store = open_store(store_url)
    sessions, dispose = datasets.sessions_for(database_url(url))
    try:
        with sessions() as session:
            if campaign_id is None:
                title = name or source.stem
                body = validate(CampaignCreate, {"name": title, "prompt": title, **settings,
                                                 "kind": "image_set"})  # fmt: skip
                campaign = Campaign(name=body.name, prompt=body.prompt, settings=body.settings())
                session.add(campaign)
                session.flush()
                audit(session, "campaign_created", campaign.id, actor="cli")
                campaign_id = campaign.id
            try:
                with click.progressbar(length=0, label=f"items from {source.name}") as bar:
                    report = import_items(session, store, campaign_id, items_of(source),
                                          progress=bar.update, actor="cli",
                                          on_error="skip" if skip_bad_rows else "abort",
                                          on_skip=_print_skip)  # fmt: skip
                session.commit()
            except BaseException:
                session.rollback()
                raise
            if start:
                lifecycle.start(session, campaign_id, actor="cli")
    finally:
        dispose()
    click.echo(
        f"imported {report.items} items ({report.images} images; files: {report.stored} stored, "
        f"{report.reused} already in the store) into campaign {report.campaign_id} "
        f"({'running' if start else 'draft'}; {report.rounds} items in all)"
        + (f"; skipped {report.skipped} malformed items" if report.skipped else "")
    )


def _print_skip(skip: Skipped) -> None:
    click.echo(f"skipped line {skip.line} (item {skip.item_id}): {skip.reason}", err=True)
