"""``rankloop bench import-images``: an image set of N items of 4 images imported from a
Parquet table (images as bytes) into a fresh SQLite database and a local store, reporting
items/s and the import's peak memory.

The table is written first (every image a distinct 16x16 PNG); the import then runs in a child
process, so its peak resident memory (the child's own) measures the import alone, and is
compared at two sizes: flat memory means the larger import peaks no higher than the smaller.
Target: 100,000 items in under 10 minutes and 1 GB on this machine.
"""

from __future__ import annotations

import io
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from rankloop.bench.export import _peak_mb
from rankloop.bench.report import format_table, save_results

PER_ITEM = 4
TARGET_S, TARGET_MB = 600.0, 1024.0


def write_table(path: Path, n_items: int, per_item: int = PER_ITEM) -> None:
    """A Parquet table of ``n_items`` rows: a prompt and ``per_item`` distinct PNGs each."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    schema = pa.schema([("item_id", pa.string()), ("prompt", pa.string()),
                        *((f"image_{n}", pa.binary()) for n in range(per_item)),
                        *((f"model_{n}", pa.string()) for n in range(per_item))])  # fmt: skip

    def png(i: int, n: int) -> bytes:
        buffer = io.BytesIO()
        colour = (i % 251, (i // 251) % 251, (i // 63001) * 16 + n * 60)
        Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
        return buffer.getvalue()

    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_items, 1000):
            rows = range(start, min(start + 1000, n_items))
            writer.write_table(pa.table({
                "item_id": [f"i{i}" for i in rows], "prompt": [f"prompt {i}" for i in rows],
                **{f"image_{n}": [png(i, n) for i in rows] for n in range(per_item)},
                **{f"model_{n}": [f"model-{n}"] * len(rows) for n in range(per_item)},
            }, schema))  # fmt: skip


def _import(url: str, store_path: str, table: str, queue: Any) -> None:
    from sqlalchemy.orm import sessionmaker

    from rankloop.core.storage import LocalStore
    from service.db import make_engine
    from service.image_sets.importer import import_items
    from service.image_sets.reading import items_of
    from service.models import Base, Campaign
    from service.schemas import CampaignCreate

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    started = time.perf_counter()
    with sessions() as session:
        body = CampaignCreate(prompt="bench", kind="image_set", attention_check=True)
        campaign = Campaign(name="bench", prompt="bench", settings=body.settings())
        session.add(campaign)
        session.flush()
        report = import_items(session, LocalStore(store_path), campaign.id, items_of(Path(table)))
        session.commit()
    engine.dispose()
    queue.put({"seconds": time.perf_counter() - started, "items": report.items,
               "images": report.images, "peak_mb": _peak_mb()})  # fmt: skip


def run(n_items: int, scratch: Path) -> dict[str, Any]:
    table = scratch / f"items-{n_items}.parquet"
    write_table(table, n_items)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    url = f"sqlite:///{scratch}/bench-{n_items}.sqlite"
    child = context.Process(target=_import, args=(url, str(scratch / f"store-{n_items}"),
                                                  str(table), queue))  # fmt: skip
    child.start()
    result = queue.get()
    child.join()
    return {
        "items": result["items"], "images": result["images"],
        "seconds": round(result["seconds"], 1),
        "items_per_s": round(result["items"] / result["seconds"], 1),
        "peak_mb": round(result["peak_mb"], 1),
        "within_target": result["seconds"] * 100_000 / result["items"] < TARGET_S
        and result["peak_mb"] < TARGET_MB,
    }  # fmt: skip


@click.command("import-images")
@click.option("--items", "n_items", default=100_000, show_default=True)
@click.option("--small", default=1000, show_default=True,
              help="a smaller import first, to compare peak memory (0: none)")  # fmt: skip
@click.option("--out", default="bench-results/import-images.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to save the JSON results.")  # fmt: skip
def import_images_command(n_items: int, small: int, out: str) -> None:
    """Import an image set of N items of 4 images: items/s and peak memory."""
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-import-") as scratch:
        rows = [run(n, Path(scratch)) for n in ([small] if small else []) + [n_items]]
    click.echo(format_table(rows))
    click.echo(
        f"saved {save_results(out, 'import-images', rows, target_s=TARGET_S, target_mb=TARGET_MB)}"
    )
