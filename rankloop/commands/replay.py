"""``rankloop replay <campaign> --round N``: render round N again from what the database and the
store kept (the campaign's settings and seed, the previous round's optimizer state, the
consensus the round was told) and compare the images with the stored ones.

The render runs into a scratch store, so nothing stored is touched. ``cppn`` gives the same
bytes (the render is deterministic, ``gpu_worker.render``); so does ``tiny-sd`` on the CPU at the
torch thread count the worker rendered with, which the round's manifest records and the replay
uses unless ``--threads`` says otherwise: oneDNN splits its sums by thread count, so at another
count a pixel may move by one level (``tests/test_replay.py``). A GPU's
kernels may differ in the last bits too, so ``--tolerance`` accepts decoded pixels within that
many levels (of 255).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import click
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.commands.errors import CampaignId
from rankloop.core.contracts import RenderResult
from rankloop.core.errors import NotFound
from rankloop.core.storage import LocalStore, ObjectStore


@dataclass(frozen=True)
class ImageCheck:
    index: int | str  # the worker's index, or "best"
    role: str
    same_bytes: bool
    max_pixel_difference: int


def replay_round(sessions: Callable[[], Session], store: ObjectStore, campaign_id: str,
                 number: int, threads: int | None = None) -> list[ImageCheck]:  # fmt: skip
    """Render round ``number`` again into a scratch store; one check per stored image.

    A diffusion render runs at ``threads`` torch CPU threads, by default the count the worker
    recorded in the round's manifest."""
    from gpu_worker.render import render_round
    from service.models import Campaign, Image, Round
    from service.render_messages import render_message

    with sessions() as session:
        campaign = session.get(Campaign, campaign_id)
        round_ = session.scalar(
            select(Round).where(Round.campaign_id == campaign_id, Round.number == number)
        )
        if campaign is None or round_ is None or round_.manifest_key is None:
            raise NotFound(f"campaign {campaign_id} has no rendered round {number}")
        message = render_message(campaign, round_)
        stored = {
            i.index: (i.role, i.key)
            for i in session.scalars(select(Image).where(Image.round_id == round_.id))
        }
        best_key = round_.best_key
        recorded = RenderResult.model_validate_json(store.get(round_.manifest_key))
    with (
        tempfile.TemporaryDirectory(prefix="rankloop-replay-") as scratch_dir,
        _torch_threads(threads or recorded.torch_threads),
    ):
        scratch = LocalStore(scratch_dir)
        if message.previous_state_key:
            scratch.put(message.previous_state_key, store.get(message.previous_state_key))
        result = render_round(
            scratch, campaign_id, number, message.settings.model_dump(),
            message.previous_state_key,
            None if message.consensus is None else message.consensus.model_dump(),
        )  # fmt: skip
        fresh = {image["index"]: image["key"] for image in result["images"]}
        checks = []
        for index, (role, key) in sorted(stored.items()):
            if index not in fresh:
                checks.append(ImageCheck(index, role, False, 255))
                continue
            checks.append(_compare(index, role, store.get(key), scratch.get(fresh[index])))
        if best_key:
            best = store.get(best_key)
            checks.append(_compare("best", "best", best, scratch.get(result["best"]["key"])))
    return checks


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch at ``count`` CPU threads for the block (nothing when None: cppn needs no torch)."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _compare(index: int | str, role: str, old: bytes, new: bytes) -> ImageCheck:
    from PIL import Image

    if old == new:
        return ImageCheck(index, role, True, 0)
    a = np.asarray(Image.open(io.BytesIO(old)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(new)).convert("RGB"), dtype=np.int16)
    difference = 255 if a.shape != b.shape else int(np.abs(a - b).max())
    return ImageCheck(index, role, False, difference)


@click.command("replay")
@click.argument("campaign_id", type=CampaignId())
@click.option("--round", "number", type=int, required=True, help="the round to render again")
@click.option("--tolerance", type=int, default=0, show_default=True,
              help="largest pixel difference accepted (0: the same bytes)")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1),
              help="torch CPU threads for a diffusion render (default: the count the worker "
                   "recorded, which gives the same bytes)")  # fmt: skip
@click.option("--url", help="SQLAlchemy URL (default: RANKLOOP_DATABASE_URL)")
@click.option("--store", "store_url", help="object store (default: RANKLOOP_STORE_URL)")
def replay_command(campaign_id: str, number: int, tolerance: int, threads: int | None,
                   url: str | None, store_url: str | None) -> None:  # fmt: skip
    """Regenerate a round's images from its stored state and seed; compare with the stored."""
    from rankloop.commands.export import open_store
    from service.cli import database_url
    from service.datasets import sessions_for

    sessions, dispose = sessions_for(database_url(url))
    try:
        checks = replay_round(sessions, open_store(store_url), campaign_id, number, threads)
    finally:
        dispose()
    for check in checks:
        verdict = "same bytes" if check.same_bytes else f"differs by {check.max_pixel_difference}"
        click.echo(f"image {check.index} ({check.role}): {verdict}")
    worst = max(c.max_pixel_difference for c in checks)
    if worst > tolerance:
        raise click.ClickException(
            f"round {number} does not replay: pixels differ by up to {worst} (> {tolerance})"
        )
    click.echo(f"round {number} replays: {len(checks)} images, largest difference {worst}")
