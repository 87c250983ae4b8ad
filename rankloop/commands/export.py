"""``rankloop export`` and ``rankloop import``: a campaign's preference data in and out of a
database, with a progress bar. The formats are :mod:`service.datasets`'s (docs/guides/datasets.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from rankloop.commands.errors import CampaignId, atomic_output
from rankloop.core.errors import InvalidInput, NotFound
from rankloop.core.settings import load_settings
from service.datasets import FORMATS, IMAGE_MODES, TABLES
from service.datasets.folder import PROMPT_COLUMNS
from service.datasets.splits import DEFAULT_FRACTIONS, parse_fractions

DATABASE_HELP = "SQLAlchemy URL (default: RANKLOOP_DATABASE_URL or var/rankloop.sqlite)"


def open_store(store_url: str | None):
    """The object store at ``store_url``, else the configured one (``RANKLOOP_STORE_URL``)."""
    from rankloop.stores import store_from_config

    settings = load_settings()
    return store_from_config(
        settings.model_copy(update={"store_url": store_url}) if store_url else settings
    )


@click.command("export")
@click.argument("campaign_ids", metavar="ID...", nargs=-1, required=True,
                type=CampaignId())  # fmt: skip
@click.option("--table", type=click.Choice(list(TABLES)),
              help="default: rankings (a file), pairs (--dataset)")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="parquet",
              show_default=True)  # fmt: skip
@click.option("--images", type=click.Choice(list(IMAGE_MODES)), default="key",
              show_default=True,
              help="embed: bytes in the Parquet rows, or an images/ folder beside a JSONL file")  # fmt: skip
@click.option("--base-url",
              help="where the coordinator serves /objects/ (image URLs of a local store)")  # fmt: skip
@click.option(
    "--out", type=click.Path(path_type=Path), help="default: rankloop-<id>-<table>.<format>"
)
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path),
              help="write a Hugging Face dataset folder here instead (Parquet shards per "
              "split by prompt, and a dataset card); several campaigns go into one")  # fmt: skip
@click.option("--splits", default=",".join(f"{f:g}" for f in DEFAULT_FRACTIONS),
              show_default=True, help="--dataset: train,validation,test fractions")  # fmt: skip
@click.option("--license", "license_", default="other", show_default=True,
              help="--dataset: the card's licence (a Hub licence id)")  # fmt: skip
@click.option("--name", help="--dataset: the card's title (default: the folder's name)")
@click.option("--push-to-hub", "repo", metavar="REPO",
              help="--dataset: then upload the folder to this Hugging Face dataset repository "
              "(huggingface_hub, its token: HF_TOKEN or huggingface-cli login)")  # fmt: skip
@click.option("--images-zip", "images_zip", type=click.Path(dir_okay=False, path_type=Path),
              help="write the campaign's delivered image of every round, full size, in one zip "
              "here (round-NNNN.png, read from the store one at a time) instead of a table")  # fmt: skip
@click.option("--url", help=DATABASE_HELP)
@click.option("--store", "store_url", help="object store (default: RANKLOOP_STORE_URL)")
def export_command(campaign_ids: tuple[str, ...], table: str | None, fmt: str, images: str,
                   base_url: str | None, out: Path | None, dataset: Path | None, splits: str,
                   license_: str, name: str | None, repo: str | None, images_zip: Path | None,
                   url: str | None, store_url: str | None) -> None:  # fmt: skip
    """Export a campaign's or a study's rankings, consensus or pairwise preferences (streamed),
    with --dataset a dataset folder of one or more campaigns and studies (a study: all its
    campaigns, in its prompt list's order), or with --images-zip a campaign's images."""
    from service import datasets
    from service.cli import database_url
    from service.study_export import export_sources

    if images_zip is not None:
        if len(campaign_ids) > 1 or dataset is not None or out is not None or table is not None:
            raise click.UsageError(
                "--images-zip writes one campaign's images: give one CAMPAIGN_ID, and no "
                "--dataset, --out or --table"
            )
        _images_zip(campaign_ids[0], images_zip, url, store_url)
        return

    if dataset is None and len(campaign_ids) > 1:
        raise click.UsageError("several ids go into one --dataset folder, not one file")
    if dataset is not None and (fmt != "parquet" or out is not None):
        raise click.UsageError("--dataset writes Parquet shards: leave out --format and --out")
    table = table or ("rankings" if dataset is None else "pairs")
    try:
        fractions = parse_fractions(splits)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), param_hint="--splits") from None
    if repo is not None and dataset is None:
        raise click.UsageError("--push-to-hub uploads a --dataset folder: give --dataset DIR")
    if dataset is not None and table not in PROMPT_COLUMNS:
        raise click.UsageError(f"--dataset splits by prompt: --table {' or '.join(PROMPT_COLUMNS)}")
    sessions, dispose = datasets.sessions_for(database_url(url))
    try:
        sources, studies = export_sources(sessions, campaign_ids)
        total = sum(
            len(s.round_ids) if table.startswith("consensus") else s.count_rankings()
            for s in sources
        )
        store = open_store(store_url) if images != "key" else None

        def by_url(key: str) -> str | None:
            """Presigned by the store, else under --base-url, else none (image_0_url null)."""
            presigned = store.url(key, 7 * 24 * 3600) if store is not None else None
            if presigned:
                return presigned
            return f"{base_url.rstrip('/')}/objects/{key}" if base_url else None

        get = store.get if store is not None else None
        if dataset is not None:
            policy = datasets.Images(images, get=get, url=by_url)
            _dataset(sources, studies, table, policy, dataset, fractions, license_, name, total)
            if repo is not None:
                _push(dataset, repo)
            return
        out = out or Path(f"rankloop-{campaign_ids[0]}-{table}.{fmt}")
        policy = datasets.Images(
            images, get=get, url=by_url, folder=out.parent if fmt == "jsonl" else None
        )
        label = f"{table} of {campaign_ids[0]}"
        with (
            atomic_output(out) as partial,
            click.progressbar(length=total, label=label) as bar,
            partial.open("wb") as file,
        ):
            for chunk in datasets.export(sources, table, fmt, policy, progress=bar.update):
                file.write(chunk)
    finally:
        dispose()
    click.echo(f"wrote {out}")


def _images_zip(campaign_id: str, path: Path, url: str | None, store_url: str | None) -> None:
    """The campaign's delivered images in one zip (service.image_zip, as the console's)."""
    from service import datasets
    from service.cli import database_url
    from service.image_zip import delivered_keys, write_zip
    from service.models import Campaign

    sessions, dispose = datasets.sessions_for(database_url(url))
    try:
        with sessions() as session:
            if session.get(Campaign, campaign_id) is None:
                raise NotFound(f"no campaign {campaign_id!r}")
            keys = delivered_keys(session, campaign_id)
    finally:
        dispose()
    store = open_store(store_url)
    with (
        atomic_output(path) as partial,
        click.progressbar(length=len(keys), label=f"images of {campaign_id}") as bar,
        partial.open("wb") as file,
    ):
        written = write_zip(file, keys, store.get, progress=bar.update)
    click.echo(f"wrote {path} ({written} images)")


def _push(folder: Path, repo: str) -> None:
    """Upload the written folder to the Hub (it stays on disk whatever happens)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise click.ClickException(
            f"wrote {folder}; --push-to-hub needs huggingface_hub: pip install 'rankloop[hub]'"
        ) from None
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=folder, repo_type="dataset",
                          commit_message="rankloop export --dataset")  # fmt: skip
    except Exception as exc:  # offline, no token, no rights: the folder is still there
        raise click.ClickException(
            f"wrote {folder}, but the upload to {repo} failed: {exc}"
        ) from None
    click.echo(f"pushed {folder} to https://huggingface.co/datasets/{repo}")


def _dataset(sources, studies, table: str, images, folder: Path, fractions: tuple[float, ...],
             license_: str, name: str | None, total: int) -> None:  # fmt: skip
    from service.datasets import card
    from service.datasets import folder as dataset_folder
    from service.datasets.splits import Splitter

    splitter = Splitter(fractions)
    title = name or folder.name

    def text(summaries, written: Path) -> str:
        facts = card.split_facts(sources, splitter)
        return card.card(sources, table, summaries, facts, written, splitter, license_, title,
                         studies)  # fmt: skip

    with click.progressbar(length=total, label=f"{table} into {folder}") as bar:
        summaries = dataset_folder.write_dataset(
            sources, table, images, folder, splitter, text, progress=bar.update
        )
    for split, summary in summaries.items():
        click.echo(f"{split}: {summary.num_examples} rows, {len(summary.prompts)} prompts")
    click.echo(f"wrote {folder}")


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
