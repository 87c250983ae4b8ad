"""``rankloop bench export``: a synthetic campaign of a million rankings exported to Parquet
(images by reference), reporting rows/s and the export's peak memory.

``--images embed``: the table DPO training reads (``pairs``) with the image bytes inside, as a
dataset folder's Parquet shards (:mod:`service.datasets.folder`); each image a file of
``--image-kb`` random bytes (incompressible, as a JPEG is) read from disk as a local store
would. Target: 200,000 rankings at m = 8 (5.6 M pairs) in under 10 minutes and 1 GB.

The campaign is written straight into a fresh SQLite database (rounds of ``--per-round``
rankings over 8 candidates and an attention image, a consensus per round); the export then runs
in a child process, so its peak resident memory (the child's own) measures the export alone.
Target: under 2 minutes and under 500 MB for a million rankings.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from rankloop.bench.report import format_table, save_results
from rankloop.core.contracts import CampaignStatus, ImageRole, RoundStatus, TaskStatus

M = 8
TARGET_S, TARGET_MB = 120.0, 500.0
EMBED_TARGET_S, EMBED_TARGET_MB = 600.0, 1024.0


def build(url: str, n_rankings: int, per_round: int, seed: int = 0) -> str:
    """Write the synthetic campaign into a SQLite database; its id.

    One transaction; the million assignments and rankings go as plain parameter tuples
    (``executemany``), their JSON and timestamps written as SQLAlchemy's types write them
    (checked on the first value), the rest through SQLAlchemy Core. A commit per round and the
    ORM's bookkeeping made a million rankings take ten minutes.
    """
    import datetime as dt
    import json

    from sqlalchemy import insert

    from service.db import make_engine
    from service.models import (
        Annotator,
        Assignment,
        Base,
        Campaign,
        Consensus,
        Image,
        Ranking,
        Round,
    )  # fmt: skip

    rng = np.random.default_rng(seed)
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    campaign_id = "b" * 32
    annotators = [f"a{i:07d}" for i in range(per_round)]
    start = dt.datetime(2025, 1, 1)
    settings = {"generator": "cppn", "m": M, "k": None, "seed": seed, "rounds": 10**6,
                "annotators_per_round": per_round, "negative_prompt": ""}  # fmt: skip
    n_rounds = -(-n_rankings // per_round)
    with engine.begin() as connection:
        assignment_sql = _insert_sql(connection, Assignment, ASSIGNMENT_COLUMNS)
        ranking_sql = _insert_sql(connection, Ranking, RANKING_COLUMNS)
        stamp = _sqlite_datetime(connection, Ranking)
        connection.execute(insert(Campaign), [
            {"id": campaign_id, "prompt": "a benchmark", "settings": settings,
             "status": CampaignStatus.FINISHED}
        ])  # fmt: skip
        connection.execute(insert(Annotator), [
            {"id": a, "campaign_id": campaign_id, "token_hash": f"h{a}"} for a in annotators
        ])  # fmt: skip
        connection.execute(insert(Round), [
            {"id": number + 1, "campaign_id": campaign_id, "number": number, "kind": "gradient",
             "status": RoundStatus.CLOSED,
             "state_key": f"campaigns/{campaign_id}/rounds/{number:04d}/state.npz"}
            for number in range(n_rounds)
        ])  # fmt: skip
        ranking_id = 0
        for number in range(n_rounds):
            round_id, prefix = number + 1, f"campaigns/{campaign_id}/rounds/{number:04d}"
            ids = [f"{number:08x}{i:08x}" for i in range(M + 1)]
            connection.execute(insert(Image), [
                {"id": image_id, "round_id": round_id, "position": i, "index": i,
                 "role": ImageRole.ATTENTION if i == M else ImageRole.CANDIDATE,
                 "key": f"{prefix}/images/{image_id}.png"}
                for i, image_id in enumerate(ids)
            ])  # fmt: skip
            count = min(per_round, n_rankings - ranking_id)
            # Each row a random order of the candidates, the attention image last.
            orders = np.argsort(rng.random((count, M)), axis=1).tolist()
            assignments, rankings = [], []
            for j, order in enumerate(orders):
                ranking_id += 1
                positions = [*order, M]
                when = stamp(start + dt.timedelta(seconds=ranking_id))
                task = f"t{ranking_id:010d}"
                assignments.append(
                    (task, round_id, annotators[j], TaskStatus.SUBMITTED, when, when)
                )
                rankings.append((task, round_id, annotators[j], json.dumps(positions),
                                 json.dumps([ids[p] for p in positions]), True, False, when))  # fmt: skip
            connection.exec_driver_sql(assignment_sql, assignments)
            connection.exec_driver_sql(ranking_sql, rankings)
            connection.execute(insert(Consensus), [
                {"round_id": round_id, "method": "borda", "order": list(range(M + 1)),
                 "scores": [0.0] * (M + 1), "agreement": 0.5, "n_rankings": count,
                 "weights": dict.fromkeys(annotators[:count], 1.0)}
            ])  # fmt: skip
    engine.dispose()
    return campaign_id


ASSIGNMENT_COLUMNS = ("id", "round_id", "annotator_id", "status", "created_at", "expires_at")
RANKING_COLUMNS = ("assignment_id", "round_id", "annotator_id", "positions", "order",
                   "attention_passed", "late", "created_at")  # fmt: skip


def _insert_sql(connection: Any, model: Any, columns: tuple[str, ...]) -> str:
    quote = connection.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    return f"INSERT INTO {model.__tablename__} ({names}) VALUES ({', '.join('?' * len(columns))})"


def _sqlite_datetime(connection: Any, model: Any) -> Any:
    """A timestamp as the text SQLAlchemy's ``DateTime`` stores in SQLite (a format string is
    a tenth of the cost of its processor); checked against that processor once."""
    import datetime as dt
    import json

    def stamp(value: dt.datetime) -> str:
        return value.isoformat(" ", "microseconds")

    sample = dt.datetime(2025, 1, 2, 3, 4, 5, 6)
    columns, dialect = model.__table__.c, connection.dialect
    processor = columns.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert processor(sample) == stamp(sample), "SQLite's timestamp text changed"
    as_json = columns.positions.type.dialect_impl(dialect).bind_processor(dialect)
    assert as_json([1, [2, "a"]]) == json.dumps([1, [2, "a"]]), "SQLite's JSON text changed"
    return stamp


def _export(url: str, campaign_id: str, table: str, out: str, queue: Any) -> None:
    from service import datasets

    sessions, dispose = datasets.sessions_for(url)
    started = time.perf_counter()
    rows = 0

    def count(n: int) -> None:
        nonlocal rows
        rows += n

    source = datasets.CampaignSource(sessions, campaign_id)
    with open(out, "wb") as file:
        for chunk in datasets.export(source, table, "parquet", datasets.Images("key"), count):
            file.write(chunk)
    dispose()
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put({"seconds": seconds, "rankings": rows, "peak_mb": _peak_mb(),
               "cpu_s": usage.ru_utime + usage.ru_stime})  # fmt: skip


def write_images(url: str, root: Path, image_kb: int, seed: int = 0) -> int:
    """A file of random bytes under ``root`` for every image of the database; their count."""
    from sqlalchemy import create_engine, select

    from service.models import Image

    rng = np.random.default_rng(seed)
    engine = create_engine(url)
    with engine.connect() as connection:
        keys = list(connection.scalars(select(Image.key)))
    engine.dispose()
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(image_kb * 1024))
    return len(keys)


def _export_embedded(url: str, campaign_id: str, folder: str, root: str, queue: Any) -> None:
    """The pairs table with image bytes into a dataset folder's shards (one split: a synthetic
    campaign has one prompt)."""
    from service import datasets
    from service.datasets.folder import write_splits
    from service.datasets.splits import Splitter

    sessions, dispose = datasets.sessions_for(url)
    started = time.perf_counter()
    rankings = 0

    def count(n: int) -> None:
        nonlocal rankings
        rankings += n

    images = datasets.Images("embed", get=lambda key: (Path(root) / key).read_bytes())
    source = datasets.CampaignSource(sessions, campaign_id)
    summaries = write_splits([source], "pairs", images, Path(folder), Splitter(), count)
    dispose()
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    files = [f for s in summaries.values() for f in s.files]
    queue.put({"seconds": seconds, "rankings": rankings, "peak_mb": _peak_mb(),
               "cpu_s": usage.ru_utime + usage.ru_stime, "files": files})  # fmt: skip


def _peak_mb() -> float:
    """This process's peak resident memory. On Linux ``VmHWM``: ``ru_maxrss`` also counts the
    parent's memory that a child holds between its fork and its exec (the pytest process, when
    a test runs the benchmark)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


@click.command("export")
@click.option("--rankings", "n_rankings", type=int,
              help="default: 1,000,000 (200,000 with --images embed)")  # fmt: skip
@click.option("--per-round", default=1000, show_default=True, help="rankings per round")
@click.option("--table", type=click.Choice(["rankings", "pairs"]),
              help="default: rankings (pairs with --images embed)")  # fmt: skip
@click.option("--images", type=click.Choice(["key", "embed"]), default="key", show_default=True,
              help="embed: the pairs table with image bytes inside, as a dataset folder's shards")  # fmt: skip
@click.option("--image-kb", default=100, show_default=True, help="--images embed: bytes per image")
@click.option("--out", default="bench-results/export.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to save the JSON results.")  # fmt: skip
def export_command(n_rankings: int | None, per_round: int, table: str | None, images: str,
                   image_kb: int, out: str) -> None:  # fmt: skip
    """Export a synthetic campaign of N rankings to Parquet: rows/s and peak memory."""
    if images == "embed":
        if table == "rankings":
            raise click.UsageError("--images embed benchmarks the pairs table (what DPO reads)")
        _embedded(n_rankings or 200_000, per_round, image_kb, out)
        return
    n_rankings, table = n_rankings or 1_000_000, table or "rankings"
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-export-") as scratch:
        url = f"sqlite:///{scratch}/bench.sqlite"
        started = time.perf_counter()
        campaign_id = build(url, n_rankings, per_round)
        built = time.perf_counter() - started
        click.echo(f"built {n_rankings} rankings in {built:.1f} s")
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        parquet = f"{scratch}/{table}.parquet"
        child = context.Process(target=_export, args=(url, campaign_id, table, parquet, queue))
        child.start()
        result = queue.get()
        child.join()
        import pyarrow.parquet as pq

        rows_written = pq.ParquetFile(parquet).metadata.num_rows
        size_mb = Path(parquet).stat().st_size / 2**20
    row = {
        "table": table, "rankings": result["rankings"], "rows": rows_written,
        "build_s": round(built, 1), "seconds": round(result["seconds"], 2),
        "cpu_s": round(result["cpu_s"], 2),  # on a shared machine, less than the seconds
        "rows_per_s": round(rows_written / result["seconds"]),
        "peak_mb": round(result["peak_mb"], 1), "file_mb": round(size_mb, 1),
        "within_target": result["seconds"] < TARGET_S and result["peak_mb"] < TARGET_MB,
    }  # fmt: skip
    click.echo(format_table([row]))
    click.echo(
        f"saved {save_results(out, 'export', [row], target_s=TARGET_S, target_mb=TARGET_MB)}"
    )


def _embedded(n_rankings: int, per_round: int, image_kb: int, out: str) -> None:
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="rankloop-bench-export-") as scratch:
        url = f"sqlite:///{scratch}/bench.sqlite"
        started = time.perf_counter()
        campaign_id = build(url, n_rankings, per_round)
        n_images = write_images(url, Path(scratch) / "objects", image_kb)
        built = time.perf_counter() - started
        click.echo(f"built {n_rankings} rankings and {n_images} images in {built:.1f} s")
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        folder = Path(scratch) / "dataset"
        child = context.Process(
            target=_export_embedded,
            args=(url, campaign_id, str(folder), f"{scratch}/objects", queue),
        )
        child.start()
        result = queue.get()
        child.join()
        paths = [folder / f for f in result["files"]]
        rows_written = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        size_mb = sum(p.stat().st_size for p in paths) / 2**20
    plain_mb = rows_written * 2 * image_kb / 2**10  # the image bytes with a copy per pair
    row = {
        "table": "pairs", "images": "embed", "image_kb": image_kb,
        "rankings": result["rankings"], "rows": rows_written, "build_s": round(built, 1),
        "seconds": round(result["seconds"], 2), "cpu_s": round(result["cpu_s"], 2),
        "rows_per_s": round(rows_written / result["seconds"]),
        "peak_mb": round(result["peak_mb"], 1), "shards": len(paths),
        "dataset_mb": round(size_mb, 1), "copy_per_pair_mb": round(plain_mb),
        "within_target": result["seconds"] < EMBED_TARGET_S
        and result["peak_mb"] < EMBED_TARGET_MB,
    }  # fmt: skip
    click.echo(format_table([row]))
    saved = save_results(out, "export", [row], target_s=EMBED_TARGET_S,
                         target_mb=EMBED_TARGET_MB)  # fmt: skip
    click.echo(f"saved {saved}")
