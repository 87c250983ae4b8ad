"""The whole service on this machine for a benchmark: gunicorn (the package's settings) serving
the coordinator, Celery render workers (the ``cppn`` generator renders on the CPU), the
bookkeeping worker and beat (the sweeps), on PostgreSQL (a database of its own, created and
dropped) and Redis (keys under a prefix of its own, deleted afterwards).

The processes are started the way ``rankloop up`` (:func:`rankloop.commands.up.celery_worker`)
and ``rankloop bench api`` (:func:`rankloop.bench.load_drivers.start_gunicorn`) start theirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rankloop.bench.api import create_database, drop_database
from rankloop.bench.load_drivers import ADMIN, free_port, start_gunicorn, stop_process
from rankloop.commands.up import celery_worker

READY_S = 120.0  # a loaded machine imports Celery, torch-free workers and the app slowly


class FullStack:
    """``with FullStack(...) as stack``: ``stack.base`` serves; ``stack.db_url`` is the database."""

    def __init__(self, postgres: str, redis_url: str, web_workers: int, render_workers: int,
                 settings: dict[str, str] | None = None) -> None:  # fmt: skip
        self.postgres, self.redis_url = postgres, redis_url
        self.web_workers, self.render_workers = web_workers, render_workers
        self.settings = settings or {}
        self.processes: list[subprocess.Popen] = []
        self.server: subprocess.Popen | None = None
        self.streams: subprocess.Popen | None = None
        self.db_name: str | None = None

    def __enter__(self) -> FullStack:
        from service.cli import upgrade

        self.work = Path(tempfile.mkdtemp(prefix="rankloop-bench-stack-"))
        self.prefix = f"rankloop-bench-{uuid.uuid4().hex[:8]}:"
        self.db_name, self.db_url = create_database(self.postgres)
        env = {
            "RANKLOOP_DATABASE_URL": self.db_url,
            "RANKLOOP_DATABASE_POOL_SIZE": "5",
            "RANKLOOP_STORE_URL": str(self.work / "objects"),
            "RANKLOOP_VAR_DIR": str(self.work / "var"),
            "RANKLOOP_BROKER_URL": self.redis_url,
            "RANKLOOP_BROKER_TRANSPORT_OPTIONS": json.dumps({"global_keyprefix": self.prefix}),
            "RANKLOOP_ADMIN_TOKEN": ADMIN,
            "RANKLOOP_RATELIMIT_ENABLED": "false",  # one machine plays a crowd of many
            "RANKLOOP_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",  # the render workers share the cores with the rest
            **{f"RANKLOOP_{key.upper()}": value for key, value in self.settings.items()},
        }
        self.env = env
        try:
            upgrade(self.db_url)
            # The live streams are the stream process's (`rankloop streams`), as deployed: the
            # stream tickets name it (RANKLOOP_STREAM_URL), so the crowd's streams go there.
            self.streams, streams_port = start_streams(env, self.work / "streams.log")
            env["RANKLOOP_STREAM_URL"] = f"http://127.0.0.1:{streams_port}"
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}"
            self.server = start_gunicorn("rankloop.commands.web:create_web_app()", self.port, env,
                                         self.web_workers, self.work / "web.log")  # fmt: skip
            for n in range(self.render_workers):
                self._worker("gpu_worker.celery_app", "gpu", f"render{n}")
            self._worker("service.worker", "coord", "coord")
            beat = [sys.executable, "-m", "celery", "-A", "service.worker", "beat",
                    "--schedule", str(self.work / "beat-schedule"), "--loglevel", "WARNING"]  # fmt: skip
            with open(self.work / "beat.log", "wb") as log:
                self.processes.append(subprocess.Popen(
                    beat, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        return self

    def _worker(self, app: str, queue: str, name: str) -> None:
        log = self.work / f"{name}.log"
        process = celery_worker(app, queue, self.env, log)  # INFO: it says " ready."
        self.processes.append(process)
        deadline = time.monotonic() + READY_S
        while " ready." not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)

    def server_pids(self) -> list[int]:
        """The stream process, gunicorn's arbiter and its web processes: what holds a stream."""
        import psutil

        pids = [self.streams.pid] if self.streams is not None else []
        if self.server is None:
            return pids
        arbiter = psutil.Process(self.server.pid)
        return [*pids, arbiter.pid, *(child.pid for child in arbiter.children(recursive=True))]

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.work.glob("*.log")))  # fmt: skip

    def __exit__(self, *_: Any) -> None:
        servers = [p for p in (self.server, self.streams) if p is not None]
        for process in [*self.processes, *servers]:
            stop_process(process)
        if self.db_name is not None:
            drop_database(self.postgres, self.db_name)
        import redis

        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(match=f"*{self.prefix}*", count=500):
            client.delete(key)
        shutil.rmtree(self.work, ignore_errors=True)


def start_streams(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, int]:
    """``rankloop streams`` on a free port of 127.0.0.1 with ``env`` (over this process's), once
    its ``/healthz`` answers: (the process, its port)."""
    import urllib.request

    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rankloop", "streams", "--bind", f"127.0.0.1:{port}"],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rankloop streams exited at start: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return process, port
        except OSError:
            time.sleep(0.1)
    stop_process(process)
    raise RuntimeError("rankloop streams did not answer /healthz")


def rss_bytes(pids: list[int]) -> int:
    """The summed resident memory of these processes (those gone meanwhile count 0)."""
    import psutil

    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += psutil.Process(pid).memory_info().rss
    return total
