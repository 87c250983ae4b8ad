"""Where a stream process hears of changes: one source per process, whatever the number of
streams.

- PostgreSQL: one connection that ``LISTEN``\\ s on :data:`service.notify.CHANNEL`; every
  coordinator on every node sends there at commit. When the connection drops, the listener
  reconnects and the hub reads everything again (a notification sent meanwhile is lost).
- SQLite (one machine, ``rankloop up``): ``PRAGMA data_version`` changes whenever another
  connection commits; read every :data:`SQLITE_POLL_S` by one connection, it costs
  microseconds, and a change makes the hub read every watched state again (SQLite serves one
  machine's few pages, so that stays cheap). No Redis and no table are needed for either.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import make_url

from service.db import sqlite_path
from service.notify import CHANNEL, read_payload
from service.push.hub import Hub

log = logging.getLogger("rankloop.streams")

SQLITE_POLL_S = 0.1
_RECONNECT_MAX_S = 10.0


async def listen(database_url: str, hub: Hub) -> None:
    """Tell ``hub`` of every change, for as long as the process runs."""
    if database_url.startswith("sqlite"):
        await _poll_sqlite(database_url, hub)
    else:
        await _listen_postgres(database_url, hub)


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as psycopg takes it."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _listen_postgres(database_url: str, hub: Hub) -> None:
    import psycopg

    wait = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                libpq_url(database_url), autocommit=True
            ) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                wait = 0.5
                hub.tell(None)  # whatever changed while not listening
                async for note in connection.notifies():
                    named = read_payload(note.payload)
                    hub.tell(*named) if named is not None else hub.tell(None)
        except (psycopg.Error, OSError):
            log.warning("listening for changes failed; again in %.1f s", wait, exc_info=True)
        await asyncio.sleep(wait)
        wait = min(_RECONNECT_MAX_S, wait * 2)


async def _poll_sqlite(database_url: str, hub: Hub) -> None:
    path = sqlite_path(database_url)
    if path is None:
        raise ValueError("the stream process needs a SQLite file, not an in-memory database")
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    # One thread owns the connection: a read cancelled with the process's stop keeps running
    # in its thread, and closing the connection under it crashes the interpreter, so the
    # close goes to the same thread, after the read.
    owner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streams-sqlite")
    loop = asyncio.get_running_loop()
    try:
        seen = None
        while True:
            try:
                (version,) = await loop.run_in_executor(
                    owner, lambda: connection.execute("PRAGMA data_version").fetchone()
                )
            except sqlite3.Error:
                log.warning("reading SQLite's data_version failed", exc_info=True)
                version = None
            if version != seen:
                seen = version
                hub.tell(None)
            await asyncio.sleep(SQLITE_POLL_S)
    finally:
        owner.submit(connection.close)
        owner.shutdown(wait=False)
