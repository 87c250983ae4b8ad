"""What a live stream watches, and its state: the one definition both the web tier's polling
streams (:mod:`service.api.stream`) and the stream process (:mod:`service.push.hub`) send.

A *watch* names what a stream follows; every stream of one watch sends the same state, so the
stream process reads it once for all of them:

- ``("owner", campaign)``: a campaign's console: status, current round and its status, rankings
  in it (event ``campaign``);
- ``("member", campaign)``: an annotator of one campaign: the same without the rankings (an
  event per ranking would send every waiting page of a round to ask again, each time; the
  page's slow poll updates that count) (event ``waiting``);
- ``("study", study)``: a study's worker: the open rounds of its running campaigns and the
  study's status, so that a pause or a stop is news even with no round open (``waiting``);
- ``("pool", "")``: a pool annotator (no campaign): the open rounds of every running campaign.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import Annotator, Campaign, Ranking, Round, Study
from service.push.tickets import ANNOTATOR, read_ticket
from service.statements import round_leasable

Watch = tuple[str, str]
OWNER, MEMBER, STUDY, POOL = "owner", "member", "study", "pool"
EVENT = {OWNER: "campaign", MEMBER: "waiting", STUDY: "waiting", POOL: "waiting"}


def annotator_watch(session: Session, annotator_id: str) -> tuple[Watch, str] | None:
    """What an annotator's stream watches, and the token hash it was opened with (None: no
    such annotator)."""
    row = session.execute(
        select(Annotator.campaign_id, Annotator.study_id, Annotator.token_hash).where(
            Annotator.id == annotator_id
        )
    ).first()
    if row is None:
        return None
    if row.campaign_id is not None:
        return (MEMBER, row.campaign_id), row.token_hash
    if row.study_id is not None:
        return (STUDY, row.study_id), row.token_hash
    return (POOL, ""), row.token_hash


def read_annotator_ticket(session: Session, ticket: str) -> tuple[str, Watch, str]:
    """An annotator's valid ticket -> their id, what their stream watches and their token's
    hash (one read); else Unauthorized."""
    found: dict[str, tuple[Watch, str] | None] = {}

    def secret(annotator_id: str) -> str | None:
        watched = found[annotator_id] = annotator_watch(session, annotator_id)
        return None if watched is None else watched[1]

    annotator_id = read_ticket(ticket, ANNOTATOR, secret)
    watched = found[annotator_id]
    assert watched is not None  # read_ticket refuses an annotator not found
    return annotator_id, *watched


def state(session: Session, watch: Watch) -> dict[str, Any] | None:
    """The state a stream of ``watch`` sends (None: what it watched is gone)."""
    kind, key = watch
    if kind == OWNER:
        return campaign_state(session, key, rankings=True)
    if kind == MEMBER:
        return {"pool": False, **(campaign_state(session, key, rankings=False) or {})}
    query = (
        select(func.count(), func.max(Round.id))
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(round_leasable())
    )
    if kind == STUDY:
        query = query.where(Campaign.study_id == key)
    count, latest = session.execute(query).one()
    found: dict[str, Any] = {"pool": True, "open_rounds": count, "latest_round": latest}
    if kind == STUDY:
        found["study_status"] = session.scalar(select(Study.status).where(Study.id == key))
    return found


def campaign_state(
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
    found: dict[str, Any] = {
        "status": status,
        "round": None if latest is None else latest.number,
        "round_status": None if latest is None else latest.status,
    }
    if rankings:
        found["rankings"] = (
            0
            if latest is None
            else session.scalar(select(func.count()).where(Ranking.round_id == latest.id))
        )
    return found


def watches_of(session: Session, campaigns: set[str], studies: set[str]) -> set[Watch]:
    """The watches a change of ``campaigns`` (a round, a status) and of ``studies`` (a status)
    may have changed."""
    touched: set[Watch] = {(POOL, "")} if campaigns else set()
    for campaign_id in campaigns:
        touched |= {(OWNER, campaign_id), (MEMBER, campaign_id)}
    touched |= {(STUDY, study_id) for study_id in studies}
    if campaigns:
        of = select(Campaign.study_id).where(
            Campaign.id.in_(sorted(campaigns)), Campaign.study_id.is_not(None)
        )
        touched |= {(STUDY, str(study_id)) for study_id in session.scalars(of)}
    return touched
