"""``rankloop bench import-images``: an image set of N items of 4 images imported from a
Parquet table (images as bytes), or with ``--source datasets`` from a Hugging Face ``datasets``
folder (``save_to_disk`` layout, images as ``Image`` structs), into a fresh SQLite database and
a local store, reporting items/s and the import's peak memory.

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


def write_dataset_folder(path: Path, n_items: int, per_item: int = PER_ITEM) -> None:
    """The same rows as :func:`write_table`, as ``datasets``' ``save_to_disk`` writes them: an
    Arrow IPC stream, ``state.json`` and ``dataset_info.json``, images as ``Image`` structs."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = path.with_suffix(".parquet")
    write_table(table, n_items, per_item)
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("item_id", pa.string()), ("prompt", pa.string()),
                        *((f"image_{n}", image) for n in range(per_item)),
                        *((f"model_{n}", pa.string()) for n in range(per_item))])  # fmt: skip
    path.mkdir(parents=True)
    data = "data-00000-of-00001.arrow"
    with pa.OSFile(str(path / data), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in pq.ParquetFile(table).iter_batches(batch_size=100):
            columns = batch.to_pydict()
            for n in range(per_item):
                columns[f"image_{n}"] = [{"bytes": b, "path": None} for b in columns[f"image_{n}"]]
            writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=schema))
    table.unlink()
    features = {
        "item_id": {"dtype": "string", "_type": "Value"},
        "prompt": {"dtype": "string", "_type": "Value"},
        **{f"image_{n}": {"_type": "Image"} for n in range(per_item)},
        **{f"model_{n}": {"dtype": "string", "_type": "Value"} for n in range(per_item)},
    }
    (path / "dataset_info.json").write_text(json.dumps({"features": features}))
    state: dict[str, Any] = {
        "_data_files": [{"filename": data}], "_fingerprint": f"bench{n_items}",
        "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
        "_output_all_columns": False, "_split": None,
    }  # fmt: skip
    (path / "state.json").write_text(json.dumps(state))


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


def run(n_items: int, scratch: Path, source: str = "parquet") -> dict[str, Any]:
    if source == "datasets":
        table = scratch / f"items-{n_items}"
        write_dataset_folder(table, n_items)
    else:
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
        "source": source, "items": result["items"], "images": result["images"],
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
@click.option("--source", type=click.Choice(["parquet", "datasets"]), default="parquet",
              show_default=True,
              help="the items as a Parquet table, or as a Hugging Face datasets folder")  # fmt: skip
@click.option("--out", default="bench-results/import-images.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to save the JSON results.")  # fmt: skip
def import_images_command(n_items: int, small: int, source: str, out: str) -> None:
    """Import an image set of N items of 4 images: items/s and peak memory."""
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-import-") as scratch:
        sizes = ([small] if small else []) + [n_items]
        rows = [run(n, Path(scratch), source) for n in sizes]
    click.echo(format_table(rows))
    click.echo(
        f"saved {save_results(out, 'import-images', rows, target_s=TARGET_S, target_mb=TARGET_MB)}"
    )
