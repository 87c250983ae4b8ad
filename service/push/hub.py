"""The fan-out: every open stream of a stream process, grouped by what it watches
(:mod:`service.push.states`), told what changed.

A notification (:mod:`service.notify`, via :mod:`service.push.sources`) marks campaigns
and studies dirty and wakes :meth:`Hub.run`, which reads the state of each watch those may have
changed, once for all its streams, in a worker thread, and writes the event to each stream
whose last state differs. Notifications that arrive during a read are taken together by the
next one, so a burst costs a few reads, not one per notification or per stream. Each stream
costs an entry in a dict and the connection itself: no thread, no task, no timer of its own
(lifetimes and heartbeats are one loop over all streams, :meth:`Hub.tick`).

:meth:`Hub.sweep` reads every watched state again every ``push_sweep_s`` (ranking counts, which
no notification announces; a notification lost while the listener reconnected) and ends the
streams whose credential was revoked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.models import Annotator, OwnerKey
from service.push import states
from service.push.states import Watch
from service.push.tickets import ADMIN_SUBJECT

log = logging.getLogger("rankloop.streams")

HEARTBEAT_S = 10.0  # a comment line at least this often keeps proxies from closing an idle stream
RETRY_MS = 2000  # EventSource's own reconnect delay, should the connection drop
_CHUNK = 500  # ids per credential query


def event(name: str, data: dict[str, Any]) -> bytes:
    """One server-sent event, as both the stream process and the web tier write it."""
    return f"event: {name}\ndata: {json.dumps(data, sort_keys=True)}\n\n".encode()


@dataclass(eq=False)
class Stream:
    """One open stream: what it watches, whose credential opened it, what it last sent."""

    watch: Watch
    # ("a", annotator id, token hash) or ("o", "<campaign>:<key id | admin>", "")
    credential: tuple[str, str, str]
    write: Callable[[bytes], None]
    close: Callable[[], None]
    deadline: float
    sent: dict[str, Any] | None = None
    done: bool = False

    def finish(self, reason: str) -> None:
        """The ``end`` event (the page opens a new stream, or stops on ``gone``), then close."""
        if not self.done:
            self.done = True
            self.write(event("end", {"reason": reason}))
            self.close()


@dataclass(eq=False)
class Hub:
    sessions: sessionmaker[Session]
    sweep_s: float
    watchers: dict[Watch, set[Stream]] = field(default_factory=dict)
    _campaigns: set[str] = field(default_factory=set)
    _studies: set[str] = field(default_factory=set)
    _watches: set[Watch] = field(default_factory=set)
    _all: bool = False
    _told: int = 0  # notifications so far: a stream opened meanwhile reads again
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    # the first reads in flight, per watch, with the notification count when each began
    _first: dict[Watch, tuple[asyncio.Future[Any], int]] = field(default_factory=dict)

    # -- notifications ---------------------------------------------------------------------
    def tell(self, campaigns: set[str] | None, studies: set[str] | None = None) -> None:
        """These campaigns and studies changed (None: anything may have)."""
        self._told += 1
        if campaigns is None:
            self._all = True
        else:
            self._campaigns |= campaigns
            self._studies |= studies or set()
        self._wake.set()

    def _look_again(self, watch: Watch) -> None:
        self._watches.add(watch)
        self._wake.set()

    # -- streams -----------------------------------------------------------------------------
    @property
    def open_streams(self) -> int:
        return sum(len(streams) for streams in self.watchers.values())

    async def add(self, stream: Stream) -> None:
        """Hold ``stream`` and send it its first state. Streams of one watch that open together
        (pages reconnecting after a restart) share one read."""
        self.watchers.setdefault(stream.watch, set()).add(stream)
        stream.write(f"retry: {RETRY_MS}\n\n".encode())
        reading = self._first.get(stream.watch)
        if reading is None:
            read: asyncio.Future[Any] = asyncio.ensure_future(
                asyncio.to_thread(self._read, {stream.watch})
            )
            reading = self._first[stream.watch] = (read, self._told)
            read.add_done_callback(lambda _: self._first.pop(stream.watch, None))
        read, told = reading
        try:
            found = await asyncio.shield(read)
        except Exception:  # the database is down: the page opens a new stream (or polls)
            log.warning("reading a new stream's state failed", exc_info=True)
            stream.finish("lifetime")
            return
        if stream.done:
            return
        if stream.sent is None:  # else a notification's newer state came first
            self._publish(stream.watch, found[stream.watch], {stream})
        if self._told != told:  # a change may have committed after that read began
            self._look_again(stream.watch)

    def remove(self, stream: Stream) -> None:
        stream.done = True
        streams = self.watchers.get(stream.watch)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self.watchers[stream.watch]

    def end_all(self, reason: str) -> None:
        for streams in list(self.watchers.values()):
            for stream in list(streams):
                stream.finish(reason)

    # -- the loops ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Read and send what notifications changed, for as long as the process runs."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            campaigns, studies, watches, everything = (
                self._campaigns, self._studies, self._watches, self._all
            )  # fmt: skip
            self._campaigns, self._studies, self._watches, self._all = set(), set(), set(), False
            watched = set(self.watchers)
            if not watched:
                continue
            try:
                found = await asyncio.to_thread(
                    self._read_changed, campaigns, studies, watches, everything, watched
                )
            except Exception:
                log.exception("reading the watched states failed; trying again in a second")
                await asyncio.sleep(1.0)
                self.tell(None)
                continue
            for watch, state in found.items():
                self._publish(watch, state)

    async def sweep(self) -> None:
        """Every ``sweep_s``: every watched state again, and revoked credentials' streams end."""
        while True:
            await asyncio.sleep(self.sweep_s)
            self.tell(None)
            held = [s for streams in self.watchers.values() for s in streams]
            try:
                revoked = await asyncio.to_thread(self._revoked, {s.credential for s in held})
            except Exception:
                log.exception("checking the streams' credentials failed")
                continue
            for stream in held:
                if stream.credential in revoked:
                    stream.finish("gone")

    async def tick(self) -> None:
        """Once a second: streams past their lifetime end; a heartbeat every HEARTBEAT_S."""
        beat = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            heartbeat = now - beat >= HEARTBEAT_S
            if heartbeat:
                beat = now
            for streams in list(self.watchers.values()):
                for stream in list(streams):
                    if now >= stream.deadline:
                        stream.finish("lifetime")
                    elif heartbeat:
                        stream.write(b": heartbeat\n\n")

    # -- reads (worker threads) ----------------------------------------------------------------
    def _publish(
        self, watch: Watch, state: dict[str, Any] | None, only: set[Stream] | None = None
    ) -> None:
        data = None if state is None else event(states.EVENT[watch[0]], state)
        for stream in list(only if only is not None else self.watchers.get(watch, ())):
            if stream.done:
                continue
            if data is None or state is None:
                stream.finish("gone")  # deleted: nothing more to watch
            elif stream.sent != state:
                stream.sent = state
                stream.write(data)

    def _read(self, watches: set[Watch]) -> dict[Watch, dict[str, Any] | None]:
        with self.sessions() as session:
            return {watch: states.state(session, watch) for watch in watches}

    def _read_changed(
        self,
        campaigns: set[str],
        studies: set[str],
        watches: set[Watch],
        everything: bool,
        watched: set[Watch],
    ) -> dict[Watch, dict[str, Any] | None]:
        with self.sessions() as session:
            touched = (
                watched
                if everything
                else (states.watches_of(session, campaigns, studies) | watches) & watched
            )
            return {watch: states.state(session, watch) for watch in touched}

    def _revoked(self, credentials: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        """The credentials among ``credentials`` that no longer hold."""
        annotators = {c for c in credentials if c[0] == "a"}
        owners = {c for c in credentials if c[0] == "o" and not c[1].endswith(f":{ADMIN_SUBJECT}")}
        live: set[tuple[str, str, str]] = set()
        with self.sessions() as session:
            ids = sorted({c[1] for c in annotators})
            for start in range(0, len(ids), _CHUNK):
                rows = session.execute(
                    select(Annotator.id, Annotator.token_hash).where(
                        Annotator.id.in_(ids[start : start + _CHUNK])
                    )
                )
                live |= {("a", row.id, row.token_hash) for row in rows}
            keys = sorted({int(c[1].partition(":")[2]) for c in owners})
            alive: set[int] = set()
            for start in range(0, len(keys), _CHUNK):
                alive |= set(
                    session.scalars(
                        select(OwnerKey.id).where(
                            OwnerKey.id.in_(keys[start : start + _CHUNK]),
                            OwnerKey.revoked_at.is_(None),
                        )
                    )
                )
        live |= {c for c in owners if int(c[1].partition(":")[2]) in alive}
        return (annotators | owners) - live
