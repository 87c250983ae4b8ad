"""The simulated crowd of ``rankloop bench study`` against a served coordinator: one thread per
worker (they sleep most of the time: a thread each costs the shared cores nothing), real HTTP.

A worker joins through a link, then as the task page does: asks ``GET /api/tasks/next``; given a
task, ranks it after a log-normal time (median 20 s, sigma 0.6, times ``time_scale``) and sends
it; given none (204), opens the waiting stream (``POST /api/tasks/stream-ticket``, then the
``stream_url`` it answers, else its ``url``: the coordinator's own route) and asks again as soon
as the stream brings news, polling meanwhile with the page's backoff (1.5 s doubling to 6 s; 30 s
while the stream is live). A stream refused (503) leaves the worker polling for that wait.
Everything is timed on the wall clock (``time.time()``) so that it can be set beside the times
the database holds (round opened, task leased): :mod:`rankloop.bench.study_measures`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rankloop.core.contracts import RoundStatus

MEDIAN_RANKING_S, SIGMA = 20.0, 0.6  # a person's time per ranking (log-normal)
# The waiting page's polling (annotator_ui/static/js/waiting.js): FIRST_MS, MAX_MS, LIVE_MS.
FIRST_POLL_S, MAX_POLL_S, LIVE_POLL_S = 1.5, 6.0, 30.0
TIMEOUT_S = 60.0
# gunicorn closes a kept-alive connection idle this long (rankloop/commands/gunicorn_conf.py's
# keepalive, 5 s): a connection idle nearly as long is opened afresh, so that a POST (never
# sent twice) does not go out on a connection the server is closing.
IDLE_REOPEN_S = 4.0


def json_request(token: str | None, body: Any) -> tuple[dict[str, str], bytes | None]:
    """The headers and body of a JSON API request, as the pages send it."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    return headers, data


class Http:
    """One keep-alive connection, as a browser tab holds one; reopened after an error."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.connection: http.client.HTTPConnection | None = None
        self.used = 0.0

    def call(self, method: str, path: str, token: str | None = None, body: Any = None):
        """(status, parsed JSON body or None, headers); status 0 when no answer came."""
        headers, data = json_request(token, body)
        if time.monotonic() - self.used > IDLE_REOPEN_S:
            self.close()
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=TIMEOUT_S
                )
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2 or method == "POST":  # a POST is never sent twice
                    return 0, None, {}
                continue
            self.used = time.monotonic()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return response.status, parsed, response.headers
        return 0, None, {}

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


@dataclass
class Tally:
    """Counts shared by the crowd's threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    streams_open: int = 0
    streams_max: int = 0
    streams_opened: int = 0  # 200s
    streams_refused: int = 0  # 503s (and other refusals)
    stream_urls: set[str] = field(default_factory=set)
    refused_409: int = 0

    def opened(self, up: int) -> None:
        with self.lock:
            self.streams_open += up
            self.streams_max = max(self.streams_max, self.streams_open)
            if up > 0:
                self.streams_opened += 1


@dataclass
class Worker:
    """What one simulated worker did, on the wall clock."""

    link: str
    token: str = ""
    joined_at: float = 0.0
    left_at: float = 0.0
    waits: list[tuple[float, float]] = field(default_factory=list)  # no task: ask -> task in
    told: list[float] = field(default_factory=list)  # stream news, and polls' answers
    streams: list[tuple[float, float]] = field(default_factory=list)  # held: open -> closed
    acked: list[int] = field(default_factory=list)  # ranking ids answered 201
    arrived: threading.Event = field(default_factory=threading.Event)  # first answer in
    news: threading.Event = field(default_factory=threading.Event)  # their stream's, or a stop
    stream_attempted: threading.Event = field(default_factory=threading.Event)


class Stream(threading.Thread):
    """The waiting stream of one worker while they wait: sets ``news`` on every change."""

    def __init__(self, crowd: Crowd, worker: Worker, news: threading.Event) -> None:
        super().__init__(daemon=True)
        self.crowd, self.worker, self.news = crowd, worker, news
        self.closed = threading.Event()
        self.live = False  # a stream is open now
        self.refused = False
        self.connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        self.closed.set()
        connection = self.connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        http_ = Http(self.crowd.host, self.crowd.port)
        last: str | None = None
        try:
            while not self.closed.is_set():  # a new stream after each one's lifetime
                status, ticket, _ = http_.call(
                    "POST", "/api/tasks/stream-ticket", self.worker.token
                )
                if status != 200 or ticket is None:
                    self.refused = True
                    with self.crowd.tally.lock:
                        self.crowd.tally.streams_refused += 1
                    return
                url = urlsplit(ticket.get("stream_url") or ticket["url"])
                with self.crowd.tally.lock:
                    self.crowd.tally.stream_urls.add(ticket.get("stream_url") or "(coordinator)")
                last = self._listen(url, last)
                if self.refused:
                    return
        finally:
            self.worker.stream_attempted.set()
            http_.close()

    def _listen(self, url: Any, last: str | None) -> str | None:
        host, port = url.hostname or self.crowd.host, url.port or self.crowd.port
        self.connection = http.client.HTTPConnection(host, port, timeout=None)
        path = url.path + (f"?{url.query}" if url.query else "")
        try:
            self.connection.request("GET", path, headers={"Accept": "text/event-stream"})
            response = self.connection.getresponse()
            if response.status != 200:
                response.read()
                with self.crowd.tally.lock:
                    self.crowd.tally.streams_refused += 1
                self.refused = True  # 503: too many streams here; the worker polls
                return last
            self.crowd.tally.opened(+1)
            self.live, opened = True, time.time()
            self.worker.stream_attempted.set()
            try:
                return self._events(response, last)
            finally:
                self.live = False
                self.worker.streams.append((opened, time.time()))
                self.crowd.tally.opened(-1)
        except (OSError, http.client.HTTPException):
            return last
        finally:
            self.connection.close()

    def _events(self, response: Any, last: str | None) -> str | None:
        name, data = "message", ""
        while not self.closed.is_set():
            line = response.readline()
            if not line:
                return last
            line = line.decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and data:
                if name == "end":
                    return last
                if name == "waiting" and data != last:
                    state, first = json.loads(data), last is None
                    last = data
                    # As the page: a new stream's first state is news if work may be there.
                    if (
                        not first
                        or state.get("open_rounds")
                        or state.get("round_status") == RoundStatus.OPEN
                    ):
                        self.worker.told.append(time.time())
                        self.news.set()
                name, data = "message", ""
        return last


class Crowd:
    """``workers`` simulated people, each through one of ``links``; see the module."""

    def __init__(self, base: str, links: list[str], options: dict[str, Any]) -> None:
        split = urlsplit(base)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.options = options
        self.workers = [Worker(link) for link in links]
        self.tally = Tally()
        self.stop = threading.Event()
        self.go_streams = threading.Event()  # the crowd waits for it before its first stream
        rng = random.Random(options["seed"])
        self.threads = [
            threading.Thread(target=self._run, args=(w, random.Random(rng.random())), daemon=True)
            for w in self.workers
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def finish(self) -> None:
        self.stop.set()
        self.go_streams.set()
        for worker in self.workers:
            worker.news.set()
        for thread in self.threads:
            thread.join(timeout=TIMEOUT_S + 5)

    def _run(self, worker: Worker, rng: random.Random) -> None:
        http_ = Http(self.host, self.port)
        try:
            self._join(http_, worker)
            if worker.token:
                self._work(http_, worker, rng)
        finally:
            worker.left_at = time.time()
            worker.stream_attempted.set()
            worker.arrived.set()  # (a worker that could not join counts as arrived)
            http_.close()

    def _join(self, http_: Http, worker: Worker) -> None:
        n = self.workers.index(worker)
        status, _, headers = http_.call("GET", f"{worker.link}?PROLIFIC_PID=w{n}")
        location = headers.get("Location", "") if status == 302 else ""
        token = parse_qs(urlsplit(location).fragment).get("token", [""])[0]
        worker.token, worker.joined_at = token, time.time()

    def _work(self, http_: Http, worker: Worker, rng: random.Random) -> None:
        options = self.options
        leaves_after = rng.randint(1, 20) if rng.random() < options["leave"] else None
        done, waiting_since, stream, refused = 0, None, None, False
        news, delay, first = worker.news, FIRST_POLL_S, True
        while not self.stop.is_set():
            asked = time.time()
            status, task, _ = http_.call("GET", "/api/tasks/next", worker.token)
            if status == 409:
                with self.tally.lock:
                    self.tally.refused_409 += 1
                continue
            if status == 204:
                if waiting_since is not None:
                    worker.told.append(time.time())  # a poll's answer: the server's news
                if waiting_since is None:
                    waiting_since, delay, refused = asked, FIRST_POLL_S, False
                if first:  # arrived: wait for the others before the first stream
                    first = False
                    worker.arrived.set()
                    self.go_streams.wait()
                refused = refused or (stream is not None and stream.refused)
                if not refused and (stream is None or not stream.is_alive()):
                    news.clear()
                    stream = Stream(self, worker, news)
                    stream.start()
                live = stream is not None and stream.live
                news.wait(LIVE_POLL_S if live else delay)
                news.clear()
                delay = min(delay * 2, MAX_POLL_S)
                continue
            if status != 200 or task is None:
                break  # the study ended for this worker (410, 403), or the server went away
            if waiting_since is not None:
                worker.waits.append((waiting_since, time.time()))
                worker.told.append(time.time())
                waiting_since = None
            if stream is not None:
                stream.close()
                stream = None
            if first:
                first = False
                worker.arrived.set()
                self.go_streams.wait()
            if self.stop.wait(
                options["time_scale"] * rng.lognormvariate(0.0, SIGMA) * MEDIAN_RANKING_S
            ):
                break
            if rng.random() < options["abandon"]:
                break  # the task is left to lapse, and the worker leaves
            order = [image["id"] for image in task["images"]][: task["k"] or None]
            path = f"/api/tasks/{task['task_id']}/ranking"
            sent, body, _ = http_.call("POST", path, worker.token, {"order": order})
            if sent == 201 and body is not None:
                done += 1
                worker.acked.append(int(body["ranking_id"]))
            if leaves_after is not None and done >= leaves_after:
                break
        if waiting_since is not None:
            worker.waits.append((waiting_since, time.time()))
        if stream is not None:
            stream.close()
