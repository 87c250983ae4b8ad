"""Stream tickets: what opens a live stream, checked the same way by the web tier's own stream
routes (:mod:`service.api.stream`) and by the stream process (:mod:`service.push.server`).

``EventSource`` cannot send an ``Authorization`` header, and a long-lived key must never be in
a URL (access logs, proxies, history). So the page first asks, with its Bearer header,
``POST .../stream-ticket`` for a ticket: ``<kind>.<subject>.<expiry>.<mac>``, an HMAC-SHA256
over the subject and expiry keyed with the SHA-256 of the credential as the database (or, for
the admin token, the configuration) holds it. A ticket opens only that stream, only until
:data:`TICKET_TTL_S` seconds after it was made, and stops working when the credential is
revoked (its hash is gone); it needs no secret of its own, so every process that reads the
database checks the tickets every coordinator made.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.errors import Unauthorized
from service.auth import hash_token
from service.models import Annotator, OwnerKey

TICKET_TTL_S = 60  # a ticket opens a stream within this time of being made
OWNER, ANNOTATOR = "o", "a"  # a ticket's kind
ADMIN_SUBJECT = "admin"


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


def owner_subject(campaign_id: str, key_id: int | None) -> str:
    """``<campaign id>:<owner key id | admin>``: whose owner stream a ticket opens."""
    return f"{campaign_id}:{ADMIN_SUBJECT if key_id is None else key_id}"


def owner_secret(session: Session, subject: str, admin_token: str | None) -> str | None:
    """``<campaign id>:<owner key id | admin>`` -> the hash of that credential (None: revoked,
    or no such key)."""
    _, _, key = subject.partition(":")
    if key == ADMIN_SUBJECT:
        return hash_token(admin_token) if admin_token else None
    if not (key.isascii() and key.isdigit() and len(key) < 12):
        return None
    return session.scalar(
        select(OwnerKey.key_hash).where(OwnerKey.id == int(key), OwnerKey.revoked_at.is_(None))
    )


def annotator_secret(session: Session, annotator_id: str) -> str | None:
    return session.scalar(select(Annotator.token_hash).where(Annotator.id == annotator_id))


def read_owner_ticket(
    session: Session, ticket: str, campaign_id: str, admin_token: str | None
) -> str:
    """The subject of an owner's ticket for ``campaign_id``, or Unauthorized."""
    subject = read_ticket(ticket, OWNER, lambda s: owner_secret(session, s, admin_token))
    if subject.partition(":")[0] != campaign_id:
        raise Unauthorized("this stream ticket is for another campaign")
    return subject
