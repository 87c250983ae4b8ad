"""The one notification fact: "these campaigns (a round of theirs, or their status) and these
studies (their status) changed", sent with the transaction that changed them.

On PostgreSQL it is ``pg_notify('rankloop_push', payload)`` run just before the commit, in the
same transaction: PostgreSQL delivers it to every listener (each stream process, on every
node) only if and when that transaction commits, so a stream never announces a change that
was rolled back, and never before its rows can be read. On SQLite nothing is sent: the stream
process notices any commit by ``PRAGMA data_version`` (:mod:`service.push.sources`), which
costs one read per process, not one per stream.

What is recorded, in two places only:

- every change the ORM flushes of a campaign's or a study's ``status`` and of a round's
  (new rows included): the ``after_flush`` hook below (ids are assigned by then), installed
  on the app's sessionmaker (:func:`install`), so lifecycle, closing, verdicts, forks and studies need no call of
  their own;
- the rounds moved by a Core ``UPDATE``: the compare-and-set of :mod:`service.transitions`
  calls :func:`changed` (the queued rounds an image set opens, :mod:`service.image_sets.rounds`,
  open in the transaction that closed one of that campaign's rounds by compare-and-set).

A notification means "look again", never "this happened": a stream process re-reads the state
of what its streams watch (:mod:`service.push.states`) and sends only what differs. So an
extra notification (a savepoint rolled back, a round that changed in a way no page shows) costs
a read, and a lost one (a listener reconnecting) is caught by the stream process's sweep.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from service.models import Campaign, Round, Study

CHANNEL = "rankloop_push"
_PENDING = "rankloop_push"  # session.info key: {"c": set of campaign ids, "s": set of study ids}
_MAX_PAYLOAD = 7000  # PostgreSQL refuses a payload of 8000 bytes or more


def changed(session: Session, campaign_id: str | None = None, study_id: str | None = None) -> None:
    """Note that a campaign's round or status, or a study's status, changed in this
    transaction: its streams are told when (if) it commits."""
    pending = session.info.setdefault(_PENDING, {"c": set(), "s": set()})
    if campaign_id is not None:
        pending["c"].add(campaign_id)
    if study_id is not None:
        pending["s"].add(study_id)


def payload(campaigns: set[str], studies: set[str]) -> str:
    """``{"c": [...], "s": [...]}``, or ``{"all": true}`` when that would be too long."""
    text = json.dumps({"c": sorted(campaigns), "s": sorted(studies)}, separators=(",", ":"))
    return text if len(text) < _MAX_PAYLOAD else '{"all":true}'


def read_payload(text: str) -> tuple[set[str], set[str]] | None:
    """The campaigns and studies a payload names; None: everything (or a payload not ours)."""
    try:
        data = json.loads(text)
        if data.get("all"):
            return None
        return {str(c) for c in data.get("c", ())}, {str(s) for s in data.get("s", ())}
    except (ValueError, AttributeError, TypeError):
        return None


def install(sessions: sessionmaker[Session]) -> None:
    """Record and send notifications from every session ``sessions`` makes."""
    event.listen(sessions, "after_flush", _record_flushed)
    event.listen(sessions, "before_commit", _send)
    event.listen(sessions, "after_rollback", _forget)


def _status_changed(obj: Any) -> bool:
    return bool(inspect(obj).attrs.status.history.has_changes())


def _record_flushed(session: Session, _context: Any) -> None:
    for obj in session.new:
        if isinstance(obj, Round | Campaign):
            changed(session, campaign_id=obj.campaign_id if isinstance(obj, Round) else obj.id)
        elif isinstance(obj, Study):
            changed(session, study_id=obj.id)
    for obj in session.dirty:
        if isinstance(obj, Round | Campaign | Study) and _status_changed(obj):
            if isinstance(obj, Study):
                changed(session, study_id=obj.id)
            else:
                changed(session, campaign_id=obj.campaign_id if isinstance(obj, Round) else obj.id)


def _send(session: Session) -> None:
    if session.new or session.dirty or session.deleted:
        session.flush()  # the commit's own flush comes after this hook: record it first
    pending = session.info.pop(_PENDING, None)
    if not pending or session.get_bind().dialect.name != "postgresql":
        return
    text = payload(pending["c"], pending["s"])
    session.execute(select(func.pg_notify(CHANNEL, text)))


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
