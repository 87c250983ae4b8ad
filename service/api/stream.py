"""Live updates by server-sent events, served by the web tier itself: a campaign's page learns
when its round opens, closes or the campaign changes status; an annotator's waiting page learns
when a task may be there.

The stream process (``rankloop streams``, :mod:`service.push`) serves the same two stream
routes, told of each change by a notification instead of polling, and holds thousands of idle
streams; the stream tickets made here open its streams too, and each ticket's ``stream_url``
says where to open it (``RANKLOOP_STREAM_URL``, or the same path for a proxy that routes it
there). These routes remain as the fallback of a deployment without that process.

``GET /api/campaigns/<id>/stream`` (owner) and ``GET /api/tasks/stream`` (annotator) answer
``text/event-stream``. Each stream polls the database cheaply (a few indexed reads a second)
and sends an event when what it watches changed (:mod:`service.push.states`, the same states
the stream process sends), a comment line as a heartbeat, and ends after
``Settings.stream_lifetime_s`` (25 s) with an ``end`` event; the page then opens a new one. The
short lifetime keeps a stream under gunicorn's worker timeout (30 s by default), so a sync
worker holding one is never killed as stuck. A held stream ties up a worker thread (under sync
workers, a whole process): each process serves at most ``RANKLOOP_WEB_STREAM_SLOTS`` (2) at
once, and answers 503 with ``Retry-After`` past that (the pages then poll).

Authentication: the tickets of :mod:`service.push.tickets` (``POST .../stream-ticket`` with the
Bearer header). A client that can send headers (curl) may use Bearer on these routes instead.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import ServiceUnavailable

from rankloop.core.errors import NotFound
from service.api import responses
from service.api.common import iso, owned_campaign
from service.api.responses import json_response, no_store
from service.auth import Owner, require_annotator
from service.config import app_settings
from service.db import get_session
from service.models import Campaign, utcnow
from service.push import states
from service.push.hub import HEARTBEAT_S, RETRY_MS, event
from service.push.tickets import (
    ANNOTATOR,
    OWNER,
    TICKET_TTL_S,
    annotator_secret,
    make_ticket,
    owner_secret,
    owner_subject,
    read_owner_ticket,
)
from service.routing import Reply, ok, operation

bp = Blueprint("stream", __name__, url_prefix="/api")

POLL_S = 1.0  # how often a stream reads the database
EVENT_STREAM = "text/event-stream"


def owner_secret_hash(session: Session, owner: Owner) -> str:
    """The stored hash of the credential ``owner`` authenticated with (just now)."""
    subject = owner_subject("", None if owner.is_admin else owner.key_id)
    secret = owner_secret(session, subject, app_settings().admin_token)
    assert secret is not None  # the credential just authenticated
    return secret


def _ticket() -> str | None:
    """The request's ticket, unless it sends an Authorization header: then that header is the
    credential (a wrong one answers 401 whatever ticket comes with it)."""
    return None if "Authorization" in request.headers else request.args.get("ticket")


def _ticket_reply(ticket: str, url: str) -> Response:
    """A ticket is a credential for a minute: never kept by a browser or proxy cache. Its
    ``stream_url`` is where the page opens it: the stream process when RANKLOOP_STREAM_URL
    names it, else the same path here (which a proxy may route to the stream process)."""
    expires = utcnow() + dt.timedelta(seconds=TICKET_TTL_S)
    origin = app_settings().stream_url
    stream_url = f"{origin.rstrip('/')}{url}" if origin else url
    reply = responses.StreamTicket(
        ticket=ticket, url=url, stream_url=stream_url, expires_at=iso(expires)
    )
    return no_store(json_response(reply))


# -- the owner's stream ----------------------------------------------------------------------
@operation(
    bp,
    "POST",
    "/campaigns/<campaign_id>/stream-ticket",
    summary=(
        "A ticket that opens the campaign's live stream for a minute (EventSource cannot send "
        "an Authorization header; the key never goes in a URL)"
    ),
    auth="owner",
    responses=ok(responses.StreamTicket),
)
def campaign_ticket(campaign_id: str):
    campaign, owner = owned_campaign(campaign_id)
    subject = owner_subject(campaign.id, None if owner.is_admin else owner.key_id)
    ticket = make_ticket(owner_secret_hash(get_session(), owner), OWNER, subject)
    url = url_for("stream.campaign_stream", campaign_id=campaign.id, ticket=ticket)
    return _ticket_reply(ticket, url)


@operation(
    bp,
    "GET",
    "/campaigns/<campaign_id>/stream",
    summary=(
        "Live updates, server-sent events: `campaign` (status, current round and its status, "
        "rankings in it) first and on every change, heartbeat comments, `end` after RANKLOOP_STREAM_LIFETIME_S (25 s by default) "
        "(open a new stream). Authorized by ?ticket= from stream-ticket, or Bearer. 503 with "
        "Retry-After when the server holds too many streams: poll instead"
    ),
    auth=("owner", "ticket"),
    responses={200: Reply("An event stream", media=(EVENT_STREAM,))},
)
def campaign_stream(campaign_id: str):
    """Events: ``campaign`` (its status, current round, rankings in it) first and on every
    change; ``end`` before the stream closes, also within a poll of the owner key's revoke."""
    session = get_session()
    ticket = _ticket()
    admin = app_settings().admin_token
    if ticket is None:
        campaign, owner = owned_campaign(campaign_id)  # Bearer, for clients that send headers
        campaign_id = campaign.id
        subject = owner_subject(campaign.id, None if owner.is_admin else owner.key_id)
    else:
        subject = read_owner_ticket(session, ticket, campaign_id, admin)
        if session.get(Campaign, campaign_id) is None:
            raise NotFound(f"no campaign {campaign_id!r}")

    def state(session: Session) -> dict[str, Any] | None:
        if owner_secret(session, subject, admin) is None:  # revoked: the stream ends
            return None
        return states.state(session, (states.OWNER, campaign_id))

    return _stream(state, "campaign", f"o:{subject}")


# -- the annotator's stream ------------------------------------------------------------------
@operation(
    bp,
    "POST",
    "/tasks/stream-ticket",
    summary="A ticket that opens this annotator's live stream for a minute",
    auth="annotator",
    responses=ok(responses.StreamTicket),
)
def task_ticket():
    annotator = require_annotator(get_session())
    ticket = make_ticket(annotator.token_hash, ANNOTATOR, annotator.id)
    return _ticket_reply(ticket, url_for("stream.task_stream", ticket=ticket))


@operation(
    bp,
    "GET",
    "/tasks/stream",
    summary=(
        "Live updates for a waiting annotator, server-sent events: `waiting` first and on "
        "every change of what waiting depends on (their campaign's status and round; for a pool "
        "annotator the open rounds of running campaigns; for a study's worker, those of the "
        "study and its status): ask GET /api/tasks/next again then; "
        "`end` after RANKLOOP_STREAM_LIFETIME_S (25 s by default) or when the token is revoked. Authorized by ?ticket= from "
        "stream-ticket, or Bearer; 503 with Retry-After: poll instead"
    ),
    auth=("annotator", "ticket"),
    responses={200: Reply("An event stream", media=(EVENT_STREAM,))},
)
def task_stream():
    """Events: ``waiting`` first and whenever what a waiting page depends on changed
    (:mod:`service.push.states`): then a task may be there (``GET /api/tasks/next`` decides) or
    the reason to wait changed (``GET /api/me``); ``end`` before the stream closes, also when
    the token was revoked."""
    session = get_session()
    ticket = _ticket()
    if ticket is None:
        annotator_id = require_annotator(session).id  # Bearer, for clients that send headers
        found = states.annotator_watch(session, annotator_id)
        assert found is not None  # the annotator just authenticated
        watch, token_hash = found
    else:
        annotator_id, watch, token_hash = states.read_annotator_ticket(session, ticket)

    def state(session: Session) -> dict[str, Any] | None:
        if annotator_secret(session, annotator_id) != token_hash:  # gone or revoked
            return None
        return states.state(session, watch)

    return _stream(state, "waiting", f"a:{annotator_id}")


# -- the stream itself -----------------------------------------------------------------------
_slots_lock = threading.Lock()


def _slots() -> tuple[threading.BoundedSemaphore, set[str]]:
    """This app's stream slots and who holds them (one app per process when served; tests
    build many)."""
    with _slots_lock:
        slots = current_app.extensions.get("rankloop_streams")
        if slots is None:
            slots = current_app.extensions["rankloop_streams"] = (
                threading.BoundedSemaphore(max(1, app_settings().web_stream_slots)),
                set(),
            )
        return slots


def _stream(state: Callable[[Session], dict[str, Any] | None], name: str, holder: str) -> Response:
    """A ``text/event-stream`` response that sends event ``name`` with ``state`` first and on
    every change, read every :data:`POLL_S` in a short session of its own. One stream per
    ``holder`` (a campaign's owner page, an annotator) in a process, so nobody holds the
    slots of everybody else."""
    if app_settings().web_stream_slots <= 0:
        raise ServiceUnavailable("this server serves no live streams: poll instead", retry_after=30)
    slots, holders = _slots()
    with _slots_lock:
        if holder in holders:
            raise ServiceUnavailable(
                "a live stream for this page is already open here: poll instead", retry_after=30
            )
        if not slots.acquire(blocking=False):
            raise ServiceUnavailable(
                "too many live streams on this server now: poll instead", retry_after=30
            )
        holders.add(holder)
    released = threading.Event()

    def release() -> None:  # once, whether or not the body was ever read
        with _slots_lock:
            if not released.is_set():
                released.set()
                holders.discard(holder)
                slots.release()

    get_session().close()  # no transaction is held while the stream is open
    make_session: sessionmaker[Session] = current_app.extensions["rankloop_sessionmaker"]
    lifetime = app_settings().stream_lifetime_s

    def body() -> Iterator[bytes]:
        started = last_sent = time.monotonic()
        yield f"retry: {RETRY_MS}\n\n".encode()
        previous: dict[str, Any] | None = None
        reason = "lifetime"  # the page opens a new stream
        try:
            while time.monotonic() - started < lifetime:
                with make_session() as session:
                    now = state(session)
                if now is None:
                    reason = "gone"  # deleted, or the token revoked: nothing more to watch
                    break
                if now != previous:
                    previous = now
                    last_sent = time.monotonic()
                    yield event(name, now)
                elif time.monotonic() - last_sent >= HEARTBEAT_S:
                    last_sent = time.monotonic()
                    yield b": heartbeat\n\n"
                time.sleep(POLL_S)
            yield event("end", {"reason": reason})
        finally:
            release()

    response = Response(body(), mimetype=EVENT_STREAM)
    response.call_on_close(release)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
