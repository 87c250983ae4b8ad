"""Live updates by server-sent events: a campaign's page learns when its round opens, closes or
the campaign changes status; an annotator's waiting page learns when a task may be there.

``GET /api/campaigns/<id>/stream`` (owner) and ``GET /api/tasks/stream`` (annotator) answer
``text/event-stream``. Each stream polls the database cheaply (a few indexed reads a second)
and sends an event when what it watches changed, a comment line as a heartbeat, and ends after
``Settings.stream_lifetime_s`` (25 s) with an ``end`` event; the page then opens a new one. Polling rather than a
notification channel works the same with SQLite and PostgreSQL and with several coordinators
(any of them sees a change made by another), and the short lifetime keeps a stream under
gunicorn's worker timeout (30 s by default), so a sync worker holding one is never killed as
stuck. A held stream ties up a worker thread (under sync workers, a whole process): each
process serves at most :data:`MAX_OPEN_STREAMS` at once, and answers 503 with ``Retry-After``
past that (the pages then poll, as they did before streams).

Authentication: ``EventSource`` cannot send an ``Authorization`` header, and a long-lived key
must never be in a URL (access logs, proxies, history). So the page first asks, with its
Bearer header, ``POST .../stream-ticket`` for a ticket: ``<kind>.<subject>.<expiry>.<mac>``,
an HMAC-SHA256 over the subject and expiry keyed with the SHA-256 of the credential as the
database (or, for the admin token, the configuration) holds it. A ticket opens only that
stream, only until :data:`TICKET_TTL_S` seconds after it was made, and stops working when the
credential is revoked (its hash is gone); it needs no secret of its own, so every coordinator
checks the tickets of every other. A client that can send headers (curl) may use Bearer on the
stream itself instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import ServiceUnavailable

from rankloop.core.errors import NotFound, Unauthorized
from service.api import responses
from service.api.common import iso, owned_campaign
from service.api.responses import json_response, no_store
from service.auth import Owner, hash_token, require_annotator
from service.config import app_settings
from service.db import get_session
from service.models import Annotator, Campaign, OwnerKey, Ranking, Round, utcnow
from service.routing import Reply, ok, operation
from service.statements import round_leasable

bp = Blueprint("stream", __name__, url_prefix="/api")

POLL_S = 1.0  # how often a stream reads the database
HEARTBEAT_S = 10.0  # a comment line at least this often keeps proxies from closing an idle stream
RETRY_MS = 2000  # EventSource's own reconnect delay, should the connection drop
TICKET_TTL_S = 60  # a ticket opens a stream within this time of being made
MAX_OPEN_STREAMS = 2  # per process: a stream holds a worker thread (gunicorn: 4 per process)
EVENT_STREAM = "text/event-stream"
OWNER, ANNOTATOR = "o", "a"  # a ticket's kind
ADMIN_SUBJECT = "admin"


# -- tickets ---------------------------------------------------------------------------------
def _mac(secret_hash: str, kind: str, subject: str, expires: int) -> str:
    message = f"rankloop-stream|{kind}|{subject}|{expires}".encode()
    return hmac.new(secret_hash.encode(), message, hashlib.sha256).hexdigest()


def make_ticket(secret_hash: str, kind: str, subject: str, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + TICKET_TTL_S)
    return f"{kind}.{subject}.{expires}.{_mac(secret_hash, kind, subject, expires)}"


def read_ticket(ticket: str, kind: str, secret: Callable[[str], str | None]) -> str:
    """The subject of a valid, unexpired ``ticket`` of ``kind``; ``secret(subject)`` is the
    credential hash it must be signed with (None: no such credential any more)."""
    parts = ticket.split(".")
    # ASCII only: str.isdigit() takes "²", which int() refuses, and compare_digest refuses
    # non-ASCII str; either would answer 500 instead of 401.
    if (
        not ticket.isascii()
        or len(parts) != 4
        or parts[0] != kind
        or not parts[2].isdigit()
        or len(parts[2]) > 12
    ):
        raise Unauthorized("malformed stream ticket: ask for a new one (POST .../stream-ticket)")
    _, subject, expires, mac = parts
    secret_hash = secret(subject)
    if (
        secret_hash is None
        or not hmac.compare_digest(mac, _mac(secret_hash, kind, subject, int(expires)))
        or int(expires) < time.time()
    ):
        raise Unauthorized("stream ticket expired or not valid: ask for a new one")
    return subject


def _owner_secret(session: Session, subject: str) -> str | None:
    """``<campaign id>:<owner key id | admin>`` -> the hash of that credential."""
    _, _, key = subject.partition(":")
    if key == ADMIN_SUBJECT:
        admin = app_settings().admin_token
        return hash_token(str(admin)) if admin else None
    if not (key.isascii() and key.isdigit() and len(key) < 12):
        return None
    return session.scalar(
        select(OwnerKey.key_hash).where(OwnerKey.id == int(key), OwnerKey.revoked_at.is_(None))
    )


def owner_secret_hash(session: Session, owner: Owner) -> str:
    """The stored hash of the credential ``owner`` authenticated with (just now)."""
    key = ADMIN_SUBJECT if owner.is_admin else str(owner.key_id)
    secret = _owner_secret(session, f":{key}")
    assert secret is not None  # the credential just authenticated
    return secret


def _ticket() -> str | None:
    """The request's ticket, unless it sends an Authorization header: then that header is the
    credential (a wrong one answers 401 whatever ticket comes with it)."""
    return None if "Authorization" in request.headers else request.args.get("ticket")


def _ticket_reply(ticket: str, url: str) -> Response:
    """A ticket is a credential for a minute: never kept by a browser or proxy cache."""
    expires = utcnow() + dt.timedelta(seconds=TICKET_TTL_S)
    reply = responses.StreamTicket(ticket=ticket, url=url, expires_at=iso(expires))
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
    subject = f"{campaign.id}:{ADMIN_SUBJECT if owner.is_admin else owner.key_id}"
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
    if ticket is None:
        campaign, owner = owned_campaign(campaign_id)  # Bearer, for clients that send headers
        campaign_id = campaign.id
        subject = f"{campaign.id}:{ADMIN_SUBJECT if owner.is_admin else owner.key_id}"
    else:
        subject = read_ticket(ticket, OWNER, lambda s: _owner_secret(session, s))
        if subject.partition(":")[0] != campaign_id:
            raise Unauthorized("this stream ticket is for another campaign")
        if session.get(Campaign, campaign_id) is None:
            raise NotFound(f"no campaign {campaign_id!r}")

    def state(session: Session) -> dict[str, Any] | None:
        if not _credential_live(session, subject):  # the key was revoked: the stream ends
            return None
        return _campaign_state(session, campaign_id)

    return _stream(state, "campaign", f"o:{subject}")


def _credential_live(session: Session, subject: str) -> bool:
    """Whether the owner credential of a stream's subject still holds (the admin token lives
    as long as the configuration)."""
    return subject.endswith(f":{ADMIN_SUBJECT}") or _owner_secret(session, subject) is not None


def _campaign_state(
    session: Session, campaign_id: str, rankings: bool = True
) -> dict[str, Any] | None:
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status is None:
        return None
    latest = session.execute(
        select(Round.id, Round.number, Round.status)
        .where(Round.campaign_id == campaign_id)
        .order_by(Round.number.desc())
        .limit(1)
    ).first()
    state: dict[str, Any] = {
        "status": status,
        "round": None if latest is None else latest.number,
        "round_status": None if latest is None else latest.status,
    }
    if rankings:
        state["rankings"] = (
            0
            if latest is None
            else session.scalar(select(func.count()).where(Ranking.round_id == latest.id))
        )
    return state


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
        "annotator the open rounds of running campaigns): ask GET /api/tasks/next again then; "
        "`end` after RANKLOOP_STREAM_LIFETIME_S (25 s by default) or when the token is revoked. Authorized by ?ticket= from "
        "stream-ticket, or Bearer; 503 with Retry-After: poll instead"
    ),
    auth=("annotator", "ticket"),
    responses={200: Reply("An event stream", media=(EVENT_STREAM,))},
)
def task_stream():
    """Events: ``waiting`` first and whenever what a waiting page depends on changed (their
    campaign's status and current round; for a pool annotator, the open rounds of every
    running campaign): then a task may be there (``GET /api/tasks/next`` decides) or the reason
    to wait changed (``GET /api/me``); ``end`` before the stream closes, also when the token
    was revoked."""
    session = get_session()
    ticket = _ticket()
    if ticket is None:
        annotator = require_annotator(session)
        annotator_id, token_hash = annotator.id, annotator.token_hash
    else:
        annotator_id = read_ticket(
            ticket,
            ANNOTATOR,
            lambda s: session.scalar(select(Annotator.token_hash).where(Annotator.id == s)),
        )
        token_hash = session.scalar(
            select(Annotator.token_hash).where(Annotator.id == annotator_id)
        )
    return _stream(
        lambda s: _annotator_state(s, annotator_id, str(token_hash)), "waiting", f"a:{annotator_id}"
    )


def _annotator_state(session: Session, annotator_id: str, token_hash: str) -> dict[str, Any] | None:
    row = session.execute(
        select(Annotator.campaign_id, Annotator.study_id, Annotator.token_hash).where(
            Annotator.id == annotator_id
        )
    ).first()
    if row is None or row.token_hash != token_hash:  # gone or revoked: the stream ends
        return None
    if row.campaign_id is not None:
        # Not the rankings in the round: an event per ranking would send every waiting page
        # of a round to ask again, each time (the page's slow poll updates that count).
        state = _campaign_state(session, row.campaign_id, rankings=False)
        return {"pool": False, **(state or {})}
    # A pool annotator (NULL campaign) may work on every running campaign; a study's worker on
    # every running campaign of its study.
    query = (
        select(func.count(), func.max(Round.id))
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(round_leasable())
    )
    if row.study_id is not None:
        query = query.where(Campaign.study_id == row.study_id)
    count, latest = session.execute(query).one()
    return {"pool": True, "open_rounds": count, "latest_round": latest}


# -- the stream itself -----------------------------------------------------------------------
_slots_lock = threading.Lock()


def _slots() -> tuple[threading.BoundedSemaphore, set[str]]:
    """This app's stream slots and who holds them (one app per process when served; tests
    build many)."""
    with _slots_lock:
        slots = current_app.extensions.get("rankloop_streams")
        if slots is None:
            slots = current_app.extensions["rankloop_streams"] = (
                threading.BoundedSemaphore(MAX_OPEN_STREAMS),
                set(),
            )
        return slots


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, sort_keys=True)}\n\n".encode()


def _stream(state: Callable[[Session], dict[str, Any] | None], event: str, holder: str) -> Response:
    """A ``text/event-stream`` response that sends ``event`` with ``state`` first and on every
    change, read every :data:`POLL_S` in a short session of its own. One stream per
    ``holder`` (a campaign's owner page, an annotator) in a process, so nobody holds the
    slots of everybody else."""
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
                    yield _event(event, now)
                elif time.monotonic() - last_sent >= HEARTBEAT_S:
                    last_sent = time.monotonic()
                    yield b": heartbeat\n\n"
                time.sleep(POLL_S)
            yield _event("end", {"reason": reason})
        finally:
            release()

    response = Response(body(), mimetype=EVENT_STREAM)
    response.call_on_close(release)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
