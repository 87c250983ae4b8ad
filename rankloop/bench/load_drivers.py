"""Load drivers for ``rankloop bench api``: gunicorn started and stopped, a bare WSGI endpoint
for scale, and the two load tools (wrk with ``annotators.lua``, locust with ``locustfile.py``)
whose outputs become rows of one table (requests/s and latency percentiles per endpoint).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from rankloop.commands.serve import GUNICORN_CONF

ADMIN = "bench-admin"  # the owner key of the benchmark's coordinator
WRK = shutil.which("wrk")


def bare_app(environ, start_response):
    """The floor: a WSGI app that reads the body and answers 201 with a small JSON document."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    body = b'{"ranking_id": 1}'
    start_response(
        "201 CREATED", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(
    target: str, port: int, env: dict[str, str], workers: int, log: Path
) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(GUNICORN_CONF),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        target,
    ]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "GUNICORN_ACCESSLOG": ""},
        stdout=open(log, "wb"),  # noqa: SIM115 (the child keeps it)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text()[-2000:]}")
        if log.read_text(errors="replace").count("Booting worker") >= workers and answers_http(
            port
        ):
            time.sleep(2.0)  # the last workers finish importing the app
            return process
        time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not come up on {port}: {log.read_text()[-2000:]}")


def answers_http(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means a worker is serving
    except OSError:
        return False


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGTERM the process's group, then SIGKILL it if the leader is not gone in ``timeout_s``;
    the leader is reaped either way (no zombie left behind)."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)


def run_locust(
    host: str, users: int, seconds: int, env: dict[str, str], out: Path
) -> dict[str, dict[str, Any]]:
    prefix = out / f"locust-{uuid.uuid4().hex[:6]}"
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(Path(__file__).with_name("locustfile.py")),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "5",
    ]
    subprocess.run(
        command,
        env={**os.environ, **env},
        check=False,
        capture_output=True,
        timeout=seconds + 120,
    )
    with open(f"{prefix}_stats.csv") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def run_wrk(
    host: str, connections: int, seconds: int, env: dict[str, str], out: Path
) -> tuple[dict[str, list[tuple[float, int]]], set[int]]:
    """Run wrk with the annotator script; per endpoint (latency ms, status) samples, and the
    ranking ids answered 201."""
    folder = out / f"wrk-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    command = [
        WRK or "wrk",
        "-t",
        str(connections),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(Path(__file__).with_name("annotators.lua")),
        host,
    ]
    env = {
        **env,
        "RANKLOOP_BENCH_OUT": str(folder),
        "RANKLOOP_BENCH_CONNECTIONS": str(connections),
    }
    run = subprocess.run(
        command,
        env={**os.environ, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr[-2000:]}")
    samples: dict[str, list[tuple[float, int]]] = {}
    acknowledged: set[int] = set()
    for path in sorted(folder.glob("wrk-*.txt")):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue  # a line cut short when wrk stopped
            samples.setdefault(fields[0], []).append((float(fields[1]), int(fields[2])))
            if fields[0] == "ranking" and fields[2] == "201" and fields[3:4] != ["-"]:
                acknowledged.add(int(fields[3]))
    return samples, acknowledged


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of already sorted values."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def wrk_row(
    name: str, samples: list[tuple[float, int]], ok: tuple[int, ...], seconds: float
) -> dict[str, Any]:
    latencies = sorted(ms for ms, _ in samples)
    good = sum(1 for _, status in samples if status in ok)
    return {
        "what": name,
        "requests": len(samples),
        "failures": len(samples) - good,
        "per second": good / seconds,
        "p50 ms": percentile(latencies, 0.50),
        "p99 ms": percentile(latencies, 0.99),
    }


def stats_row(name: str, stats: dict[str, Any], seconds: float) -> dict[str, Any]:
    ok = int(stats["Request Count"]) - int(stats["Failure Count"])
    return {
        "what": name,
        "requests": int(stats["Request Count"]),
        "failures": int(stats["Failure Count"]),
        "per second": ok / seconds,
        "p50 ms": float(stats["50%"]),
        "p99 ms": float(stats["99%"]),
    }
