"""``rankloop bench export``: a synthetic campaign of a million rankings exported to Parquet
(images by reference), reporting rows/s and the export's peak memory.

The campaign is written straight into a fresh SQLite database (rounds of ``--per-round``
rankings over 8 candidates and an attention image, a consensus per round); the export then runs
in a child process, so its peak resident memory (``ru_maxrss`` of the child) measures the export
alone. Target: under 2 minutes and under 500 MB for a million rankings.
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

M = 8
TARGET_S, TARGET_MB = 120.0, 500.0


def build(url: str, n_rankings: int, per_round: int, seed: int = 0) -> str:
    """Write the synthetic campaign; its id."""
    import datetime as dt

    from sqlalchemy import insert
    from sqlalchemy.orm import Session

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
    with Session(engine) as session:
        settings = {"generator": "cppn", "m": M, "k": None, "seed": seed, "rounds": 10**6,
                    "annotators_per_round": per_round, "negative_prompt": ""}  # fmt: skip
        session.add(Campaign(id=campaign_id, prompt="a benchmark", settings=settings,
                             status="finished"))  # fmt: skip
        session.execute(insert(Annotator), [
            {"id": a, "campaign_id": campaign_id, "token_hash": f"h{a}"} for a in annotators
        ])  # fmt: skip
        n_rounds, ranking_id = -(-n_rankings // per_round), 0
        for number in range(n_rounds):
            prefix = f"campaigns/{campaign_id}/rounds/{number:04d}"
            round_ = Round(campaign_id=campaign_id, number=number, kind="gradient",
                           status="closed", state_key=f"{prefix}/state.npz")  # fmt: skip
            session.add(round_)
            session.flush()
            ids = [f"{number:08x}{i:08x}" for i in range(M + 1)]
            session.execute(insert(Image), [
                {"id": image_id, "round_id": round_.id, "position": i, "index": i,
                 "role": "attention" if i == M else "candidate",
                 "key": f"{prefix}/images/{image_id}.png"}
                for i, image_id in enumerate(ids)
            ])  # fmt: skip
            count = min(per_round, n_rankings - ranking_id)
            assignments, rankings = [], []
            for j in range(count):
                ranking_id += 1
                positions = [int(p) for p in rng.permutation(M)] + [M]
                when = start + dt.timedelta(seconds=ranking_id)
                assignments.append({"id": f"t{ranking_id:010d}", "round_id": round_.id,
                                    "annotator_id": annotators[j], "status": "submitted",
                                    "created_at": when, "expires_at": when})  # fmt: skip
                rankings.append({"assignment_id": f"t{ranking_id:010d}", "round_id": round_.id,
                                 "annotator_id": annotators[j], "positions": positions,
                                 "order": [ids[p] for p in positions], "attention_passed": True,
                                 "late": False, "created_at": when})  # fmt: skip
            session.execute(insert(Assignment), assignments)
            session.execute(insert(Ranking), rankings)
            session.add(Consensus(round_id=round_.id, method="borda", order=list(range(M + 1)),
                                  scores=[0.0] * (M + 1), agreement=0.5, n_rankings=count,
                                  weights={a: 1.0 for a in annotators[:count]}))  # fmt: skip
            session.commit()
    engine.dispose()
    return campaign_id


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
    queue.put({"seconds": time.perf_counter() - started, "rankings": rows})


@click.command("export")
@click.option("--rankings", "n_rankings", default=1_000_000, show_default=True)
@click.option("--per-round", default=1000, show_default=True, help="rankings per round")
@click.option("--table", type=click.Choice(["rankings", "pairs"]), default="rankings",
              show_default=True)  # fmt: skip
@click.option("--out", default="bench-results/export.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to save the JSON results.")  # fmt: skip
def export_command(n_rankings: int, per_round: int, table: str, out: str) -> None:
    """Export a synthetic campaign of N rankings to Parquet: rows/s and peak memory."""
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-export-") as scratch:
        url = f"sqlite:///{scratch}/bench.sqlite"
        started = time.perf_counter()
        campaign_id = build(url, n_rankings, per_round)
        click.echo(f"built {n_rankings} rankings in {time.perf_counter() - started:.1f} s")
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        parquet = f"{scratch}/{table}.parquet"
        child = context.Process(target=_export, args=(url, campaign_id, table, parquet, queue))
        child.start()
        result = queue.get()
        child.join()
        # ru_maxrss: kilobytes on Linux, bytes on macOS.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak_mb = peak / (2**20 if sys.platform == "darwin" else 2**10)
        import pyarrow.parquet as pq

        rows_written = pq.ParquetFile(parquet).metadata.num_rows
        size_mb = Path(parquet).stat().st_size / 2**20
    row = {
        "table": table, "rankings": result["rankings"], "rows": rows_written,
        "seconds": round(result["seconds"], 2),
        "rows_per_s": round(rows_written / result["seconds"]),
        "peak_mb": round(peak_mb, 1), "file_mb": round(size_mb, 1),
        "within_target": result["seconds"] < TARGET_S and peak_mb < TARGET_MB,
    }  # fmt: skip
    click.echo(format_table([row]))
    click.echo(
        f"saved {save_results(out, 'export', [row], target_s=TARGET_S, target_mb=TARGET_MB)}"
    )
