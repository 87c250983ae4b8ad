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
        """gunicorn's arbiter and web processes: where the streams are served today."""
        import psutil

        if self.server is None:
            return []
        arbiter = psutil.Process(self.server.pid)
        return [arbiter.pid, *(child.pid for child in arbiter.children(recursive=True))]

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.work.glob("*.log")))  # fmt: skip

    def __exit__(self, *_: Any) -> None:
        for process in [*self.processes, *([self.server] if self.server else [])]:
            stop_process(process)
        if self.db_name is not None:
            drop_database(self.postgres, self.db_name)
        import redis

        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(match=f"*{self.prefix}*", count=500):
            client.delete(key)
        shutil.rmtree(self.work, ignore_errors=True)


def rss_bytes(pids: list[int]) -> int:
    """The summed resident memory of these processes (those gone meanwhile count 0)."""
    import psutil

    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += psutil.Process(pid).memory_info().rss
    return total


def listening_pids(port: int) -> list[int]:
    """The processes (of this user) listening on ``port``, and their children: the server a
    ``stream_url`` names when it is not gunicorn's."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                   for c in proc.net_connections(kind="tcp")):  # fmt: skip
                found.extend([proc.pid, *(c.pid for c in proc.children(recursive=True))])
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return sorted(set(found))
