"""The verdict round: the crowd asked whether it prefers the delivered image to the start.

A verdict round is an ordinary round of kind :data:`~rankloop.core.contracts.VERDICT_ROUND`
whose two images are already rendered (round 0's current best, role ``start``, and the latest
current best, role ``delivered``): it opens at once, is leased, ranked, stored and closed like
any round (a ranking of two images is a pairwise choice). It is the campaign's last round when
its setting ``verdict`` says so (:func:`open_final`, from :func:`service.closing.close_round`),
or asked for by the owner once a campaign has ended (:func:`request`). Closing it ends the
campaign again (:func:`conclude`).

Who answers: annotators who did not steer the campaign (no ranking in its other rounds) first.
A steering annotator is offered the round only when no such annotator is around (none seen in
:data:`FRESH_SEEN` who could still answer) or once the round has outlived its first deadline
(:func:`open_to`); the verdict round is not counted against ``tasks_per_annotator``, which
bounds steering work.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import ColumnElement, bindparam, exists, func, select
from sqlalchemy.orm import Session

from rankloop.core.contracts import (
    CAMPAIGN_CONCLUDED,
    VERDICT_ROUND,
    CampaignStatus,
    ImageRole,
    RoundStatus,
)
from rankloop.core.errors import Conflict
from rankloop.core.verdict import Verdict, count_answers
from service.driver import ANNOTATORS, RANKINGS, ROUNDS
from service.models import Annotator, AuditEvent, Campaign, Image, Ranking, Round, utcnow
from service.rendering import Outcome
from service.transitions import audit, get_campaign

# An annotator who did not steer and was seen this recently may still come for the verdict:
# until none is, steering annotators wait (at most until the round's first deadline).
FRESH_SEEN: Final = dt.timedelta(minutes=10)
OPENED: Final = "verdict_round_opened"  # its audit event records what the round compares
_THEN: Final = "then"  # and the campaign's status once it closes (its event's key)


def is_verdict(round_: Round) -> bool:
    return round_.kind == VERDICT_ROUND


def _pair(rounds: list[Round]) -> tuple[Round, Round] | None:
    """The rounds holding the start (round 0) and the delivered image (the latest current
    best of a steering round); None when either is missing or both are the same picture."""
    steering = [r for r in rounds if r.kind != VERDICT_ROUND and r.best_key]
    if not steering or steering[0].number != 0:
        return None
    start, delivered = steering[0], steering[-1]
    if start.best_key == delivered.best_key:
        return None
    return start, delivered


def _open(
    session: Session, campaign: Campaign, then: str, now: dt.datetime, actor: str | None = None
) -> Round | None:
    rounds = list(
        session.scalars(
            select(Round).where(Round.campaign_id == campaign.id).order_by(Round.number)
        )
    )
    pair = _pair(rounds)
    if pair is None:
        return None
    start, delivered = pair
    round_ = Round(
        campaign_id=campaign.id,
        number=rounds[-1].number + 1,
        kind=VERDICT_ROUND,
        status=RoundStatus.OPEN,
        # The delivered image stays the campaign's current best; a fork from here is one from
        # the delivered round's state.
        best_key=delivered.best_key,
        best_thumb_key=delivered.best_thumb_key,
        state_key=delivered.state_key,
        previous_state_key=delivered.state_key,
        opened_at=now,
        deadline=now + dt.timedelta(seconds=campaign.config.round_deadline_s),
    )
    session.add(round_)
    session.flush()
    for position, (role, source) in enumerate(
        ((ImageRole.START, start), (ImageRole.DELIVERED, delivered))
    ):
        assert source.best_key is not None
        session.add(
            Image(
                round_id=round_.id,
                position=position,
                index=source.number,  # the round the image comes from
                role=role,
                key=source.best_key,
                thumb_key=source.best_thumb_key,
            )
        )
    audit(
        session,
        OPENED,
        campaign.id,
        round_.number,
        actor=actor,
        start_round=start.number,
        delivered_round=delivered.number,
        **{_THEN: str(then)},
    )
    return round_


def open_final(session: Session, campaign: Campaign, now: dt.datetime) -> bool:
    """Open the verdict round that ends a campaign whose last steering round just closed (in the
    caller's transaction); False when there is nothing to compare (the campaign then ends)."""
    return _open(session, campaign, CampaignStatus.FINISHED, now) is not None


def conclude(session: Session, campaign: Campaign, round_: Round, now: dt.datetime) -> None:
    """A verdict round closed: the campaign ends again, as it had (finished or stopped)."""
    opened = session.scalar(
        select(AuditEvent.data)
        .where(
            AuditEvent.campaign_id == campaign.id,
            AuditEvent.round_number == round_.number,
            AuditEvent.kind == OPENED,
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    then = (opened or {}).get(_THEN, CampaignStatus.FINISHED)
    campaign.status = CampaignStatus(then)
    campaign.finished_at = campaign.finished_at or now
    audit(session, "verdict_round_closed", campaign.id, round_.number)
    audit(session, f"campaign_{campaign.status}", campaign.id, round_.number)


def request(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    """The owner asks for a verdict (another one adds its answers to the first's): a campaign
    that has ended (finished or stopped, no round left open) runs again for one verdict round."""
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in CAMPAIGN_CONCLUDED:
        raise Conflict(
            f"campaign is {campaign.status}: a verdict is asked of an ended (finished or "
            "stopped) campaign; a running one ends with its own (setting verdict)"
        )
    busy = session.scalar(
        select(Round.number).where(
            Round.campaign_id == campaign.id,
            Round.status.in_((RoundStatus.OPEN, RoundStatus.RENDERING)),
        )
    )
    if busy is not None:
        raise Conflict(f"round {busy} of this campaign is still open: stop it or let it close")
    now = utcnow()
    round_ = _open(session, campaign, campaign.status, now, actor)
    if round_ is None:
        raise Conflict(
            "nothing to compare: the campaign has no delivered image that differs from its start"
        )
    campaign.status = CampaignStatus.RUNNING
    session.commit()
    return Outcome(events=["verdict"])


def campaign_verdict(session: Session, campaign_id: str) -> Verdict:
    """The verdict of every stored answer to the campaign's verdict rounds (excluded annotators'
    apart, as in every consensus)."""
    return study_verdicts(session, [campaign_id])[campaign_id]


def study_verdicts(session: Session, campaign_ids: list[str]) -> dict[str, Verdict]:
    """Each campaign's verdict (:func:`campaign_verdict`), read for many campaigns at once (a
    study's: its own is :func:`rankloop.core.verdict.pool` of these) in four queries at most."""
    found: dict[str, Verdict] = {cid: Verdict() for cid in campaign_ids}
    rounds = dict(
        session.execute(
            select(Round.id, Round.campaign_id).where(
                Round.campaign_id.in_(campaign_ids), Round.kind == VERDICT_ROUND
            )
        ).all()
    )
    if not rounds:
        return found
    roles: dict[int, dict[str, int]] = {}
    for image in session.scalars(select(Image).where(Image.round_id.in_(list(rounds)))):
        roles.setdefault(image.round_id, {})[image.role] = image.position
    # Who steered which campaign (ranked one of its other rounds).
    steered = set(
        session.execute(
            select(Round.campaign_id, Ranking.annotator_id)
            .join(Round, Round.id == Ranking.round_id)
            .where(Round.campaign_id.in_(set(rounds.values())), _steering(Round.kind))
            .distinct()
        ).all()
    )
    answers = session.execute(
        select(Ranking.round_id, Ranking.annotator_id, Ranking.positions)
        .join(Annotator, Annotator.id == Ranking.annotator_id)
        .where(Ranking.round_id.in_(list(roles)), Annotator.excluded.is_(False))
        .order_by(Ranking.id)
    ).all()
    by_campaign: dict[str, list[tuple[Any, int, int, bool]]] = {}
    for round_id, annotator_id, positions in answers:
        held = roles[round_id]
        if ImageRole.START in held and ImageRole.DELIVERED in held:
            cid = rounds[round_id]
            by_campaign.setdefault(cid, []).append(
                (positions, held[ImageRole.START], held[ImageRole.DELIVERED],
                 (cid, annotator_id) in steered)
            )  # fmt: skip
    for cid, counted in by_campaign.items():
        found[cid] = count_answers(counted)
    return found


# -- who is offered the verdict round (inside service.leasing's statement) ----------------------


def _steering(kind: Any) -> ColumnElement[bool]:
    return func.coalesce(kind, "") != VERDICT_ROUND


def is_verdict_sql(rounds: Any = ROUNDS) -> ColumnElement[bool]:
    return func.coalesce(rounds.c.kind, "") == VERDICT_ROUND


def open_to(annotator_id: Any, rounds: Any = ROUNDS) -> ColumnElement[bool]:
    """Whether the annotator (a parameter) may be offered the round ``rounds`` stands for: any
    round but a verdict round; a verdict round when the annotator did not steer its campaign,
    when no annotator who did not is around to answer (none seen since the parameter
    ``recent`` who has not ranked in the campaign), or once the round has been extended."""
    rk, own = RANKINGS, ROUNDS.alias("steered_round")
    steered = exists(
        select(rk.c.id)
        .join(own, own.c.id == rk.c.round_id)
        .where(
            rk.c.annotator_id == annotator_id,
            own.c.campaign_id == rounds.c.campaign_id,
            _steering(own.c.kind),
        )
    )
    a, theirs = ANNOTATORS, RANKINGS.alias("their_ranking")
    their_round = ROUNDS.alias("their_round")
    answered = exists(
        select(theirs.c.id)
        .join(their_round, their_round.c.id == theirs.c.round_id)
        .where(theirs.c.annotator_id == a.c.id, their_round.c.campaign_id == rounds.c.campaign_id)
    )
    fresh_around = exists(
        select(a.c.id).where(
            a.c.revoked_at.is_(None),
            a.c.campaign_id.is_(None) | (a.c.campaign_id == rounds.c.campaign_id),
            a.c.last_seen >= bindparam("recent"),
            ~answered,
        )
    )
    return ~is_verdict_sql(rounds) | ~steered | (rounds.c.extensions > 0) | ~fresh_around


def recent(now: dt.datetime) -> dt.datetime:
    """The ``recent`` parameter of :func:`open_to` at ``now``."""
    return now - FRESH_SEEN


__all__ = [
    "FRESH_SEEN",
    "campaign_verdict",
    "conclude",
    "is_verdict",
    "is_verdict_sql",
    "open_final",
    "open_to",
    "recent",
    "request",
    "study_verdicts",
]
