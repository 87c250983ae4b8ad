"""Bearer-token authentication for owners and annotators.

Tokens are 32 random bytes (URL-safe base64); only their SHA-256 is stored. A slow hash
(bcrypt) buys nothing for 256-bit random secrets and would cap the submission rate.
The admin token (``RANKLOOP_ADMIN_TOKEN``) is an owner key that sees every campaign; owner keys
made with ``rankloop db create-owner-key`` see only the campaigns they created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.errors import Forbidden, TokenRevoked, Unauthorized
from service.config import app_settings
from service.models import Annotator, Campaign, OwnerKey


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case, any
    spaces around the token), or None. The one reading of the header: the rate limits key on
    what authentication reads, so ``bearer x`` and ``Bearer  x`` count as ``Bearer x``."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_token() -> str:
    token = parse_bearer(request.headers.get("Authorization", ""))
    if token is None:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    return token


@dataclass(frozen=True)
class Owner:
    key_id: int | None  # None: the admin token

    @property
    def is_admin(self) -> bool:
        return self.key_id is None

    def check(self, campaign: Campaign) -> None:
        if not self.is_admin and campaign.owner_key_id != self.key_id:
            raise Forbidden("this campaign belongs to another owner key")


def require_owner(session: Session) -> Owner:
    token = bearer_token()
    admin = app_settings().admin_token
    if admin and hmac.compare_digest(token.encode(), str(admin).encode()):
        return Owner(key_id=None)
    key = session.scalar(
        select(OwnerKey).where(
            OwnerKey.key_hash == hash_token(token), OwnerKey.revoked_at.is_(None)
        )
    )
    if key is None:
        raise Unauthorized(
            "unknown owner key: use RANKLOOP_ADMIN_TOKEN or a key from "
            "'rankloop db create-owner-key'"
        )
    return Owner(key_id=key.id)


def unknown_token(session: Session, token_hash: str) -> Unauthorized:
    """The answer to an annotator token no annotator holds (every path that looks one up): 401
    ``token_revoked`` for a token the owner revoked, else 401 ``unauthorized``. Only a refused
    request pays for the second look-up."""
    revoked = session.scalar(
        select(Annotator.id).where(Annotator.revoked_token_hash == token_hash).limit(1)
    )
    if revoked is not None:
        return TokenRevoked(
            "this task link was revoked by the study's organiser: it gives no more tasks"
        )
    return Unauthorized("unknown annotator token: open the task link you were given again")


def require_annotator(session: Session, *, for_update: bool = False) -> Annotator:
    token_hash = hash_token(bearer_token())
    query = select(Annotator).where(Annotator.token_hash == token_hash)
    if for_update and session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    annotator = session.scalar(query)
    if annotator is None:
        raise unknown_token(session, token_hash)
    return annotator
