"""``rankloop bench streams``: how fast the stream process tells waiting pages that work exists,
and what an idle stream costs it.

Setup: a PostgreSQL database of its own (created and dropped), a study of ``--rounds``
campaigns (each started, its round 0 rendering), ``--streams`` study workers each holding a
stream of one ``rankloop streams`` process (a subprocess, over real HTTP; its sweep an hour
apart, so that only notifications tell it anything). Then, one at a time, each campaign's round
0 is reported rendered (as a GPU worker's result would be): the commit opens it and every
waiting worker's stream must say so. Notify latency is from the start of that step (its commit
included) to the event's arrival at each client; memory per idle stream is the growth of the
stream process's resident memory from before the streams opened to when all were open,
divided by their number.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from rankloop.bench.api import create_database, drop_database
from rankloop.bench.load_drivers import ADMIN, percentile, stop_process
from rankloop.bench.report import format_table, save_results
from rankloop.bench.stack import rss_bytes, start_streams
from rankloop.bench.turnaround import render_result

WAIT_S = 60.0  # a bound on any one wait: a miss is reported, not waited on forever
WARM_UP = 10  # streams opened before the memory baseline: thread pool, database pool


class Clients:
    """``len(urls)`` event-stream clients on an asyncio loop of their own: every event's arrival
    time (monotonic) and data, per stream."""

    def __init__(self, port: int, urls: list[str]) -> None:
        self.port = port
        self.events: list[list[tuple[float, dict[str, Any]]]] = [[] for _ in urls]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks = [
            asyncio.run_coroutine_threadsafe(self._read(i, url), self.loop)
            for i, url in enumerate(urls)
        ]

    async def _read(self, index: int, url: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"GET {url} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream refused: {status!r}")
        while (await reader.readline()).strip():
            pass  # headers
        data = None
        while line := await reader.readline():
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
            elif line == b"\n" and data is not None:
                self.events[index].append((time.monotonic(), data))
                data = None
        writer.close()

    def wait(self, seen: Any, timeout: float = WAIT_S) -> list[float | None]:
        """For each stream, when it first received an event that ``seen(data)``; None: never."""
        deadline = time.monotonic() + timeout
        while True:
            found = [next((t for t, d in events if seen(d)), None) for events in self.events]
            if all(t is not None for t in found) or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def close(self) -> None:
        async def cancel() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@click.command("streams")
@click.option("--streams", "n_streams", default=300, show_default=True, help="waiting pages")
@click.option("--rounds", default=20, show_default=True, help="rounds opened, one at a time")
@click.option(
    "--postgres",
    default=os.environ.get(
        "RANKLOOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
    ),
    show_default=True,
    help="an admin URL; the benchmark creates and drops its own database",
)
@click.option("--out", default="bench-results/streams.json", show_default=True)
def streams_command(n_streams: int, rounds: int, postgres: str, out: str) -> None:
    """Notify latency (commit to event) and memory per idle stream of `rankloop streams`."""
    from rankloop.commands.web import create_web_app
    from service.auth import hash_token, new_token
    from service.cli import upgrade
    from service.db import get_engine, session_scope
    from service.models import Annotator
    from service.rendering import round_rendered

    db_name, db_url = create_database(postgres)
    work = Path(tempfile.mkdtemp(prefix="rankloop-bench-streams-"))
    env = {**os.environ, "RANKLOOP_DATABASE_URL": db_url, "RANKLOOP_ADMIN_TOKEN": ADMIN,
           "RANKLOOP_STORE_URL": str(work / "objects"), "RANKLOOP_BROKER_URL": "memory://",
           "RANKLOOP_PUSH_SWEEP_S": "3600", "RANKLOOP_PUSH_STREAM_LIFETIME_S": "3600"}  # fmt: skip
    process = clients = warm = app = None
    try:
        upgrade(db_url)
        app = create_web_app({"DATABASE_URL": db_url, "STORE_URL": str(work / "objects"),
                              "BROKER_URL": "memory://", "ADMIN_TOKEN": ADMIN})  # fmt: skip
        owner = app.test_client()
        bearer = {"Authorization": f"Bearer {ADMIN}"}
        body = {"name": "bench", "prompts": [f"prompt {i}" for i in range(rounds)],
                "settings": {"m": 4, "annotators_per_round": 2, "rounds": 2}, "start": True}  # fmt: skip
        study = owner.post("/api/studies", json=body, headers=bearer)
        assert study.status_code == 201, study.get_json()
        study_id = study.get_json()["id"]
        campaigns = [c["id"] for c in study.get_json()["campaigns"]]
        tokens = [new_token() for _ in range(n_streams + WARM_UP)]
        with app.app_context(), session_scope(app) as session:
            session.add_all(Annotator(study_id=study_id, token_hash=hash_token(t)) for t in tokens)
            session.commit()

        try:
            process, port = start_streams(env, work / "streams.log")
        except RuntimeError as error:
            raise click.ClickException(str(error)) from error
        urls = []
        for token in tokens:
            ticket = owner.post(
                "/api/tasks/stream-ticket", headers={"Authorization": f"Bearer {token}"}
            )
            urls.append(ticket.get_json()["stream_url"])
        warm = Clients(port, urls[:WARM_UP])
        warm.wait(lambda d: d.get("open_rounds") == 0)
        time.sleep(1.0)
        rss_before = rss_bytes([process.pid]) / 1024
        urls = urls[WARM_UP:]
        opened = time.monotonic()
        clients = Clients(port, urls)
        first = clients.wait(lambda d: d.get("open_rounds") == 0)
        open_s = time.monotonic() - opened
        if None in first:
            raise click.ClickException("not every stream opened; see " + str(work / "streams.log"))
        time.sleep(1.0)  # let the process settle before reading its memory
        rss_after = rss_bytes([process.pid]) / 1024

        latencies: list[float] = []
        missed = 0
        for number, campaign_id in enumerate(campaigns, 1):
            started = time.monotonic()
            with app.app_context(), session_scope(app) as session:
                assert round_rendered(session, render_result(campaign_id, 0, 4))
            told = clients.wait(lambda d, n=number: d.get("open_rounds", 0) >= n)
            missed += sum(t is None for t in told)
            latencies += [t - started for t in told if t is not None]
        latencies.sort()
        row = {
            "streams": n_streams,
            "rounds_opened": rounds,
            "events": len(latencies),
            "missed": missed,
            "notify_p50_s": percentile(latencies, 0.50),
            "notify_p99_s": percentile(latencies, 0.99),
            "notify_max_s": latencies[-1] if latencies else None,
            "open_all_s": open_s,
            "rss_before_mb": rss_before / 1024,
            "rss_after_mb": rss_after / 1024,
            "kb_per_stream": (rss_after - rss_before) / n_streams,
        }
        click.echo(format_table([row]))
        path = save_results(out, "streams", [row], database="postgresql", cores=os.cpu_count(),
                            sweep_s=3600, channel="PostgreSQL NOTIFY -> rankloop streams",
                            warm_up_streams=WARM_UP)  # fmt: skip
        click.echo(f"saved {path}")
    finally:
        for held in (clients, warm):
            if held is not None:
                held.close()
        if process is not None:
            stop_process(process)
        if app is not None:
            get_engine(app).dispose()
        drop_database(postgres, db_name)
