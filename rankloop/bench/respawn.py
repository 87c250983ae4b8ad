"""``rankloop bench respawn``: what clients see while gunicorn replaces a web process under load.

gunicorn with the package's settings (``rankloop/commands/gunicorn_conf.py``) serves the app on
PostgreSQL (a database of its own) and Redis. Client threads in this process, each on its own
keep-alive connection as a load balancer keeps them, ask ``GET /api/campaigns`` (a database
read) without pause, and a probe asks ``GET /healthz`` twice a second with a 5 s timeout, as a
load balancer's health check does. Two faults, each in a fresh server:

- ``kill``: a web process is killed with ``kill -9`` a third of the way through the load;
- ``kill-all``: every web process is, at once (an OOM kill of the lot): nothing serves until
  gunicorn's replacements do;
- ``recycle``: ``GUNICORN_MAX_REQUESTS`` is small, so every process is replaced several times
  (gunicorn's ``max_requests``: a graceful exit after that many requests, with jitter).

For each: requests answered, failed (reset, refused, no answer within 30 s), the slowest
answer, answers slower than 5 s, probes that timed out, and the longest stretch without a
probe's answer. A request is never retried, so a request lost with its process is counted.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click

from rankloop.bench.api import services_options
from rankloop.bench.load_drivers import ADMIN, free_port, start_gunicorn, stop_process
from rankloop.bench.report import format_table, save_results

PROBE_TIMEOUT_S = 5.0  # a load balancer's health check gives up after this
PROBE_EVERY_S = 0.5
REQUEST_TIMEOUT_S = 30.0  # gunicorn's own worker timeout: no answer by then is no answer
FAULTS = ("kill", "kill-all", "recycle")
RECYCLE_AFTER = 150  # GUNICORN_MAX_REQUESTS in the recycle run (plus the config's jitter)


def _workers(log: Path) -> list[int]:
    """The web processes' pids that gunicorn announced, in boot order."""
    return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log.read_text())]


def _kill(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


class _Load:
    """Client threads and a probe against one server; every request's outcome recorded."""

    def __init__(self, port: int, users: int):
        self.port, self.users = port, users
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[tuple[float, float, str]] = []  # start, seconds, outcome
        self.probes: list[tuple[float, float, str]] = []

    def _client(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S
                )
            started = time.monotonic()
            try:
                connection.request(
                    "GET", "/api/campaigns", headers={"Authorization": f"Bearer {ADMIN}"}
                )
                response = connection.getresponse()
                response.read()
                outcome = str(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
                if connection is not None:
                    connection.close()
                connection = None
            with self.lock:
                self.requests.append((started, time.monotonic() - started, outcome))

    def _probe(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT_S)
            try:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                outcome = str(response.status)
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
            finally:
                connection.close()
            self.probes.append((started, time.monotonic() - started, outcome))
            self.stop.wait(max(0.0, PROBE_EVERY_S - (time.monotonic() - started)))

    def run(self, seconds: float, fault: Any = None) -> None:
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.users)]
        threads.append(threading.Thread(target=self._probe, daemon=True))
        for thread in threads:
            thread.start()
        if fault is not None:
            time.sleep(seconds / 3)
            fault()
            time.sleep(seconds * 2 / 3)
        else:
            time.sleep(seconds)
        self.stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)

    def row(self, name: str) -> dict[str, Any]:
        answered = [r for r in self.requests if r[2].isdigit()]
        failed = [r for r in self.requests if not r[2].isdigit()]
        latencies = sorted(r[1] for r in answered)
        ok_probes = sorted(start + took for start, took, outcome in self.probes if outcome == "200")
        edges = [self.probes[0][0], *ok_probes, self.probes[-1][0] + self.probes[-1][1]]
        gap = max(b - a for a, b in itertools.pairwise(edges))
        return {
            "fault": name,
            "requests": len(self.requests),
            "failed": len(failed),
            "failures": sorted({r[2] for r in failed}),
            "slowest_s": round(max((r[1] for r in self.requests), default=0.0), 2),
            "p99_s": round(latencies[int(0.99 * (len(latencies) - 1))], 3) if latencies else None,
            "over_5s": sum(1 for r in self.requests if r[1] > PROBE_TIMEOUT_S),
            "probes": len(self.probes),
            "probes_failed": sum(1 for p in self.probes if p[2] != "200"),
            "longest_without_probe_answer_s": round(gap, 2),
        }


def _serve(env: dict[str, str], workers: int, work: Path, name: str):
    port = free_port()
    log = work / f"{name}.log"
    server = start_gunicorn("rankloop.commands.web:create_web_app()", port, env, workers, log)
    return server, port, log


@click.command("respawn")
@click.option("--out", default="bench-results/respawn.json", show_default=True)
@click.option("--seconds", default=30, show_default=True, help="load duration per fault")
@click.option("--users", default=16, show_default=True, help="client connections")
@click.option("--workers", default=2, show_default=True, help="gunicorn processes")
@click.option(
    "--fault", "faults", multiple=True, type=click.Choice(FAULTS),
    help="[default: all]",
)  # fmt: skip
@services_options
def respawn_command(
    out: str,
    seconds: int,
    users: int,
    workers: int,
    faults: tuple[str, ...],
    postgres: str,
    redis_url: str,
) -> None:
    """What clients and health probes see while gunicorn replaces a web process under load."""
    from rankloop.bench.api import create_database, drop_database
    from service.cli import upgrade

    db_name, db_url = create_database(postgres)
    work = Path(tempfile.mkdtemp(prefix="rankloop-bench-respawn-"))
    prefix = f"rankloop-bench-{uuid.uuid4().hex[:8]}:"
    env = {
        "RANKLOOP_DATABASE_URL": db_url,
        "RANKLOOP_DATABASE_POOL_SIZE": "5",
        "RANKLOOP_STORE_URL": str(work / "objects"),
        "RANKLOOP_BROKER_URL": redis_url,
        "RANKLOOP_BROKER_TRANSPORT_OPTIONS": json.dumps({"global_keyprefix": prefix}),
        "RANKLOOP_ADMIN_TOKEN": ADMIN,
        "RANKLOOP_RATELIMIT_ENABLED": "false",
    }
    rows: list[dict[str, Any]] = []
    try:
        upgrade(db_url)
        for fault in faults or FAULTS:
            extra = {"GUNICORN_MAX_REQUESTS": str(RECYCLE_AFTER)} if fault == "recycle" else {}
            server, port, log = _serve({**env, **extra}, workers, work, fault)
            load = _Load(port, users)
            try:
                if fault == "recycle":
                    load.run(seconds)
                else:
                    victims = -1 if fault == "kill" else -workers  # the processes now serving
                    load.run(seconds, lambda log=log, n=victims: _kill(_workers(log)[n:]))
            finally:
                stop_process(server)
            row = load.row(fault)
            row["workers_booted"] = len(_workers(log))
            rows.append(row)
    finally:
        drop_database(postgres, db_name)
    columns = ["fault", "requests", "failed", "slowest_s", "p99_s", "over_5s", "probes_failed",
               "longest_without_probe_answer_s", "workers_booted"]  # fmt: skip
    click.echo(format_table(rows, columns))
    meta = {"seconds": seconds, "users": users, "workers": workers, "cores": os.cpu_count(),
            "recycle_after": RECYCLE_AFTER, "probe_timeout_s": PROBE_TIMEOUT_S}  # fmt: skip
    save_results(out, "respawn", rows, **meta)
    click.echo(f"saved {out}")
