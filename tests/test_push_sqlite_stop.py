"""The stream process's SQLite source stops cleanly however its read is caught: stopping
cancels the poll while a ``PRAGMA data_version`` may still run in its thread, and closing the
connection under that read crashed the interpreter (a segfault in CI's teardown of
tests/test_push.py). Run in a child process, so a crash fails this test and not the suite."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

STOP_REPEATEDLY = textwrap.dedent(
    """
    import asyncio, random, sys
    import service.push.sources as sources

    sources.SQLITE_POLL_S = 0  # read back to back: a cancel mostly lands mid-read

    class Hub:
        def tell(self, *changed):
            pass

    async def main(url, times):
        random.seed(0)
        for _ in range(times):
            task = asyncio.create_task(sources._poll_sqlite(url, Hub()))
            await asyncio.sleep(random.random() * 0.002)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def test_stopping_the_sqlite_source_mid_read_never_crashes(tmp_path: Path) -> None:
    database = tmp_path / "rankloop.db"
    with sqlite3.connect(database) as made:
        made.execute("CREATE TABLE t (x)")
    # 300 stops crashed the old source every time in 5 tries; the fixed one survives them.
    child = subprocess.run(
        [sys.executable, "-c", STOP_REPEATEDLY, f"sqlite:///{database}", "300"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-2000:]
