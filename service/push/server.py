"""The stream process (``rankloop streams``): the live stream routes, held as asyncio
connections.

It answers three requests, over HTTP/1.1, and closes every connection after its response:

- ``GET /api/tasks/stream?ticket=`` and ``GET /api/campaigns/<id>/stream?ticket=``: the same
  server-sent events as the web tier's routes of the same paths (:mod:`service.api.stream`),
  opened by the same tickets (:mod:`service.push.tickets`), so a proxy routes those two paths
  here and nothing else changes; ``Access-Control-Allow-Origin: *`` lets a page on another
  port or host open them (the ticket, not a cookie, is the credential);
- ``GET /healthz``: ``{"status": "ok", "streams": <open streams>}``.

Why its own small asyncio process and not the web tier: a stream is idle nearly all its life,
and a sync gunicorn worker would give each a thread (hence the web tier's few stream slots).
Here an idle stream is a socket and a dict entry, a few kilobytes, and the database is read
per change and per watched thing, never per stream. The standard library's asyncio is enough
for GET and an event stream, so it needs no web framework; the web tier's own code (Flask,
sync SQLAlchemy) is reused in worker threads for the reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.orm import Session, sessionmaker

from rankloop.core.errors import NotFound, RankloopError, Unauthorized
from rankloop.core.settings import Settings
from service.db import database_unavailable_errors, make_engine
from service.models import Campaign
from service.push import sources, states
from service.push.hub import Hub, Stream
from service.push.tickets import read_owner_ticket

log = logging.getLogger("rankloop.streams")

HEAD_LIMIT = 16 * 1024  # a request's line and headers
HEAD_TIMEOUT_S = 10.0  # to send them
_CAMPAIGN_STREAM = re.compile(r"/api/campaigns/([A-Za-z0-9_-]{1,64})/stream")
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 400: "Bad Request",
            503: "Service Unavailable"}  # fmt: skip


def _head(status: int, content_type: str, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\nCache-Control: no-store\r\n"
        "Access-Control-Allow-Origin: *\r\nConnection: close\r\n"
        f"{extra}\r\n"
    ).encode()


def _json_reply(status: int, body: dict[str, Any], extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    return _head(status, "application/json", f"Content-Length: {len(data)}\r\n{extra}") + data


def _error(status: int, code: str, message: str, extra: str = "") -> bytes:
    return _json_reply(
        status, {"error": {"code": code, "message": message, "details": None}}, extra
    )


@dataclass
class Opened:
    watch: states.Watch
    credential: tuple[str, str, str]


class _Connection(asyncio.Protocol):
    """One client: its request head, then (for a stream) the events the hub writes."""

    def __init__(self, service: StreamService) -> None:
        self.service = service
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.stream: Stream | None = None
        self.started = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self.started:
            return  # nothing more is read from a client once its request is in
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > HEAD_LIMIT:
                self._reply(_error(431, "header_too_large", "request head too large"))
            return
        self.started = True
        if self.timer is not None:
            self.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._answer(bytes(self.head[:end])))
        self.service.tasks.add(task)
        task.add_done_callback(self.service.tasks.discard)

    def pause_writing(self) -> None:
        # Events are tiny: a stream whose buffer fills is a client that stopped reading.
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.stream is not None:
            self.service.hub.remove(self.stream)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _reply(self, data: bytes) -> None:
        self._write(data)
        self._close()

    async def _answer(self, head: bytes) -> None:
        try:
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _version = request_line.split(" ", 2)
        except ValueError:
            return self._reply(_error(400, "bad_request", "malformed request line"))
        url = urlsplit(target)
        if url.path == "/healthz":
            streams = self.service.hub.open_streams
            return self._reply(_json_reply(200, {"status": "ok", "streams": streams}))
        campaign = _CAMPAIGN_STREAM.fullmatch(url.path)
        if url.path != "/api/tasks/stream" and campaign is None:
            return self._reply(_error(404, "not_found", "no such stream here"))
        if method != "GET":
            return self._reply(_error(405, "method_not_allowed", "streams answer GET only"))
        ticket = parse_qs(url.query).get("ticket", [""])[0]
        try:
            if not ticket:
                raise Unauthorized(
                    "open a stream with ?ticket= from POST .../stream-ticket (the stream "
                    "process takes no Authorization header)"
                )
            opened = await asyncio.to_thread(
                self.service.open, ticket, campaign.group(1) if campaign else None
            )
        except RankloopError as error:
            return self._reply(_error(error.http_status, error.code, str(error)))
        except database_unavailable_errors():
            log.warning("opening a stream: the database is unavailable", exc_info=True)
            message = "the database is unavailable: try again shortly, or poll"
            return self._reply(_error(503, "unavailable", message, "Retry-After: 5\r\n"))
        if self.transport is None or self.transport.is_closing():
            return None  # the client left meanwhile
        self._write(_head(200, "text/event-stream", "X-Accel-Buffering: no\r\n"))
        self.stream = Stream(opened.watch, opened.credential, self._write, self._close,
                             deadline=time.monotonic() + self.service.lifetime_s)  # fmt: skip
        await self.service.hub.add(self.stream)
        return None


class StreamService:
    """The hub, the listener and the server of one stream process."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.lifetime_s = settings.push_stream_lifetime_s
        self.hub = Hub(sessions, sweep_s=settings.push_sweep_s)
        self.tasks: set[asyncio.Task[Any]] = set()

    def open(self, ticket: str, campaign_id: str | None) -> Opened:
        """Check a ticket (in a worker thread): what its stream watches, and whose it is."""
        with self.sessions() as session:
            if campaign_id is not None:
                admin = self.settings.admin_token
                subject = read_owner_ticket(session, ticket, campaign_id, admin)
                if session.get(Campaign, campaign_id) is None:
                    raise NotFound(f"no campaign {campaign_id!r}")
                return Opened((states.OWNER, campaign_id), ("o", subject, ""))
            annotator_id, watch, token_hash = states.read_annotator_ticket(session, ticket)
            return Opened(watch, ("a", annotator_id, token_hash))

    async def serve(
        self, host: str, port: int, started: Future[int] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:  # fmt: skip
        """Serve until ``stop`` is set (or the task is cancelled); ``started`` (a thread-safe
        future) gets the port, or the error that kept it from listening."""
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: _Connection(self), host, port, backlog=4096, reuse_address=True
            )
        except OSError as error:  # the port is taken: say so to whoever waits for it
            if started is not None:
                started.set_exception(error)
            raise
        bound = server.sockets[0].getsockname()[1]
        loops = [
            loop.create_task(self.hub.run()),
            loop.create_task(self.hub.sweep()),
            loop.create_task(self.hub.tick()),
            loop.create_task(sources.listen(self.settings.database_url, self.hub)),
        ]
        if started is not None:
            started.set_result(bound)
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            server.close()
            self.hub.end_all("lifetime")  # the pages open a new stream (on another process)
            for task in [*loops, *self.tasks]:
                task.cancel()
            await asyncio.gather(*loops, *self.tasks, return_exceptions=True)
            await server.wait_closed()


def make_service(settings: Settings) -> StreamService:
    options: dict[str, Any] = {}
    if not settings.database_url.startswith("sqlite"):
        options = {"pool_size": settings.database_pool_size,
                   "max_overflow": settings.database_max_overflow, "pool_pre_ping": True}  # fmt: skip
    engine = make_engine(settings.database_url, **options)
    return StreamService(settings, sessionmaker(engine, expire_on_commit=False))


def run(settings: Settings, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        started: Future[int] = Future()
        started.add_done_callback(_log_started)
        await make_service(settings).serve(host, port, started, stop)

    asyncio.run(main())


def _log_started(started: Future[int]) -> None:
    if started.exception() is None:
        log.info("rankloop streams listening on port %s", started.result())


class Background:
    """A stream process's service on a thread of this process (``rankloop up``, tests)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = make_service(settings)
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        ready: Future[int] = Future()
        serving = self.service.serve(host, port, ready, self._stop)
        self.thread = threading.Thread(
            target=self._run, args=(serving,), name="streams", daemon=True
        )
        self.thread.start()
        try:
            self.port = ready.result(timeout=30)
        except BaseException:
            self.thread.join(timeout=10)
            self.service.sessions.kw["bind"].dispose()
            raise

    def _run(self, serving: Any) -> None:
        with contextlib.suppress(OSError):  # a port taken: the constructor raises it
            self.loop.run_until_complete(serving)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self.loop.close()
        self.service.sessions.kw["bind"].dispose()
