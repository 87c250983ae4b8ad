"""A web process replaced under load (killed, or recycled by ``max_requests``) leaves no request
waiting for seconds: gunicorn's arbiter imports the app's modules once, so a new process only
forks and creates its app; a process that is done exits at once; recycled processes are spread
out. The seconds themselves: ``rankloop bench respawn`` (docs/guides/deploy.md, "When gunicorn
replaces a web process")."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

from rankloop.commands import serve

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip


def test_the_arbiter_imports_the_web_app_and_nothing_else():
    """The modules a new web process would import are loaded before the fork; the bookkeeping
    worker's entry point (which creates an app at import), Alembic's environment, the GPU
    worker and torch are not."""
    done = run_python("""
        import sys
        from rankloop.commands.web import import_web_tiers
        count = import_web_tiers()
        wanted = ("service.api.annotators", "service.sweep", "annotator_ui", "boto3", "psycopg")
        print(count, all(name in sys.modules for name in wanted),
              [name for name in ("service.worker", "service.migrations.env", "gpu_worker", "torch")
               if name in sys.modules])
    """)
    assert done.returncode == 0, done.stderr
    count, loaded, unwanted = done.stdout.split(maxsplit=2)
    assert int(count) > 30 and loaded == "True" and unwanted.strip() == "[]"


def test_a_done_web_process_exits_at_once_with_gunicorns_status(tmp_path):
    """``worker_exit`` ends the process itself (no interpreter teardown) with the status
    gunicorn was leaving with, so a boot error still stops the arbiter; called in the arbiter
    for a worker already gone, it does nothing."""
    script = """
        import os, sys, types
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
        from rankloop.commands import gunicorn_conf
        other = types.SimpleNamespace(pid=os.getpid() + 1, wsgi=None)
        gunicorn_conf.worker_exit(None, other)  # the arbiter's call: returns
        print("arbiter went on", flush=True)
        me = types.SimpleNamespace(pid=os.getpid(), wsgi=None)
        import atexit
        atexit.register(lambda: print("interpreter teardown", flush=True))
        try:
            sys.exit(int(sys.argv[2]))
        finally:
            gunicorn_conf.worker_exit(None, me)
    """
    for status in (0, 3):
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script), str(tmp_path), str(status)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert done.returncode == status, done.stderr
        assert done.stdout.splitlines() == ["arbiter went on"]  # no teardown ran


def test_recycled_processes_are_spread_over_half_again_their_requests(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("GUNICORN_MAX_REQUESTS", "10000")
    conf = runpy.run_path(str(serve.GUNICORN_CONF))
    assert (conf["max_requests"], conf["max_requests_jitter"]) == (10000, 5000)
    assert conf["preload_app"] is False  # each process creates its own app and pools
    monkeypatch.delenv("GUNICORN_MAX_REQUESTS")
    assert runpy.run_path(str(serve.GUNICORN_CONF))["max_requests"] == 0  # never, by default
