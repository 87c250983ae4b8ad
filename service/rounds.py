"""The round lifecycle, as plain functions on a SQLAlchemy session.

render (GPU task) -> :func:`round_rendered` opens the round -> :func:`lease` hands tasks out ->
:func:`submit` commits each ranking -> :func:`close_if_ready` (quorum) or :func:`sweep`
(deadline) closes it -> consensus -> the next render request, until the budget or a stop.

Every public function is one unit of work: it commits (or rolls back) before it returns, and
returns the render requests to send *after* that commit, so a message never announces a row
that does not exist yet. Transitions are compare-and-set updates on ``(status, version)``: when
two coordinators or two bookkeeping workers race, exactly one UPDATE matches and the other
sees ``rowcount == 0`` and backs off. Campaign rows are locked ``FOR UPDATE`` on PostgreSQL;
SQLite transactions start with ``BEGIN IMMEDIATE`` (see :mod:`service.db`), which serialises
writers outright.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from rankloop.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from service.models import (
    Annotator,
    Assignment,
    AuditEvent,
    Campaign,
    Consensus,
    Image,
    Ranking,
    Round,
    utcnow,
)

WORKER_SETTING_KEYS = (
    "generator",
    "model",
    "negative_prompt",
    "steps",
    "guidance",
    "width",
    "height",
    "scheduler",
    "seed",
    "m",
    "k",
    "attention_check",
    "optimizer",
)


UNSENT_GRACE = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class RenderRequest:
    """The keyword arguments of one ``rankloop.render_round`` message (see architecture.md)."""

    campaign_id: str
    round_number: int
    settings: dict[str, Any]
    previous_state_key: str | None = None
    consensus: dict[str, Any] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "round_number": self.round_number,
            "settings": self.settings,
            "previous_state_key": self.previous_state_key,
            "consensus": self.consensus,
        }


@dataclass
class Outcome:
    """What a lifecycle step did: render requests to send after commit, and what happened."""

    renders: list[RenderRequest] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


# -- helpers -------------------------------------------------------------------------------


def audit(
    session: Session,
    event: str,
    campaign_id: str | None = None,
    round_number: int | None = None,
    actor: str | None = None,
    **data: Any,
) -> None:
    session.add(
        AuditEvent(
            kind=event,
            campaign_id=campaign_id,
            round_number=round_number,
            actor=actor,
            data=data or None,
        )
    )


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def get_campaign(session: Session, campaign_id: str, *, lock: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id)
    if lock and _is_postgres(session):
        query = query.with_for_update()
    campaign = session.scalar(query.execution_options(populate_existing=lock))
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    return campaign


def worker_settings(campaign: Campaign) -> dict[str, Any]:
    settings = {key: campaign.settings.get(key) for key in WORKER_SETTING_KEYS}
    settings["prompt"] = campaign.prompt
    return settings


def _round(session: Session, campaign_id: str, number: int) -> Round | None:
    return session.scalar(
        select(Round).where(Round.campaign_id == campaign_id, Round.number == number)
    )


def _new_round(
    session: Session,
    campaign: Campaign,
    number: int,
    previous: Round | None,
    consensus: dict[str, Any] | None,
) -> RenderRequest:
    round_ = Round(
        campaign_id=campaign.id,
        number=number,
        status="rendering",
        previous_state_key=previous.state_key if previous else None,
        consensus_in=consensus,
    )
    session.add(round_)
    audit(session, "round_render_requested", campaign.id, number)
    return render_request(campaign, round_)


def render_request(campaign: Campaign, round_: Round) -> RenderRequest:
    return RenderRequest(
        campaign.id,
        round_.number,
        worker_settings(campaign),
        round_.previous_state_key,
        round_.consensus_in,
    )


def _rowcount(result: Any) -> int:
    return int(result.rowcount)  # a CursorResult: UPDATE reports the rows it matched


def _cas(session: Session, round_: Round, expected_status: str, **values: Any) -> bool:
    """Compare-and-set on (status, version): True when this caller won the transition."""
    result = session.execute(
        update(Round)
        .where(
            Round.id == round_.id, Round.status == expected_status, Round.version == round_.version
        )
        .values(version=round_.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return False
    session.refresh(round_)
    return True


# -- campaign controls -----------------------------------------------------------------------


def start(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in ("draft", "paused"):
        raise Conflict(f"campaign is {campaign.status}: only a draft or paused campaign starts")
    outcome = Outcome()
    campaign.status = "running"
    audit(session, "campaign_started", campaign.id, actor=actor)
    if not campaign.rounds:
        outcome.renders.append(_new_round(session, campaign, 0, None, None))
    session.commit()
    return outcome


def pause(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    return _set_status(session, campaign_id, ("running",), "paused", actor)


def stop(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    return _set_status(
        session, campaign_id, ("draft", "running", "paused", "failed"), "stopped", actor
    )


def resume(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    """Paused -> running; failed -> running with the failed round's render sent again."""
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in ("paused", "failed"):
        raise Conflict(f"campaign is {campaign.status}: only a paused or failed campaign resumes")
    outcome = Outcome()
    if campaign.status == "failed":
        for round_ in campaign.rounds:
            if round_.status == "failed" and _cas(
                session, round_, "failed", status="rendering", error=None, render_enqueued_at=None
            ):
                outcome.renders.append(render_request(campaign, round_))
        campaign.error = None
    if not campaign.rounds:
        outcome.renders.append(_new_round(session, campaign, 0, None, None))
    campaign.status = "running"
    audit(session, "campaign_resumed", campaign.id, actor=actor)
    session.commit()
    return outcome


def _set_status(
    session: Session, campaign_id: str, allowed: tuple[str, ...], status: str, actor: str | None
) -> Outcome:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in allowed:
        raise Conflict(f"campaign is {campaign.status}: cannot go to {status} from there")
    campaign.status = status
    if status == "stopped":
        campaign.finished_at = utcnow()
    audit(session, f"campaign_{status}", campaign.id, actor=actor)
    session.commit()
    return Outcome()


def mark_enqueued(session: Session, campaign_id: str, round_number: int, task_id: str) -> None:
    session.execute(
        update(Round)
        .where(
            Round.campaign_id == campaign_id,
            Round.number == round_number,
            Round.status == "rendering",
        )
        .values(render_enqueued_at=utcnow(), render_task_id=task_id)
    )
    session.commit()


# -- render results -------------------------------------------------------------------------


def round_rendered(
    session: Session, result: dict[str, Any], now: dt.datetime | None = None
) -> bool:
    """Record a render result and open the round. A duplicate result changes nothing."""
    now = now or utcnow()
    campaign_id, number = str(result["campaign_id"]), int(result["round_number"])
    campaign = get_campaign(session, campaign_id, lock=True)
    round_ = _round(session, campaign_id, number)
    if round_ is None or round_.status != "rendering":
        session.rollback()
        return False
    images = sorted(result["images"], key=lambda i: (i.get("role") != "candidate", int(i["index"])))
    if not images:
        raise InvalidInput(f"render result for round {number} holds no images")
    deadline = now + dt.timedelta(seconds=float(campaign.settings["round_deadline_s"]))
    won = _cas(
        session,
        round_,
        "rendering",
        status="open",
        kind=result.get("kind"),
        state_key=result.get("state_key"),
        manifest_key=result.get("manifest_key"),
        render_seconds=result.get("render_seconds"),
        stats=result.get("stats") or {},
        opened_at=now,
        deadline=deadline,
    )
    if not won:
        session.rollback()
        return False
    for position, image in enumerate(images):
        session.add(
            Image(
                round_id=round_.id,
                position=position,
                index=int(image["index"]),
                role=image.get("role", "candidate"),
                key=image["key"],
                thumb_key=image.get("thumb_key"),
            )
        )
    audit(
        session,
        "round_opened",
        campaign_id,
        number,
        n_images=len(images),
        kind=result.get("kind"),
        render_seconds=result.get("render_seconds"),
    )
    session.commit()
    return True


def round_failed(session: Session, campaign_id: str, round_number: int, error: str) -> bool:
    """A render failed for good (the worker's retries are spent): fail the campaign visibly."""
    campaign = get_campaign(session, campaign_id, lock=True)
    round_ = _round(session, campaign_id, round_number)
    if round_ is None or not _cas(session, round_, "rendering", status="failed", error=error):
        session.rollback()
        return False
    if campaign.status in ("running", "paused"):
        campaign.status = "failed"
    campaign.error = f"round {round_number}: {error}"
    audit(session, "round_failed", campaign_id, round_number, error=error)
    session.commit()
    return True


# -- tasks ----------------------------------------------------------------------------------


LAST_SEEN_EVERY = dt.timedelta(seconds=60)


def _active_leases(now: dt.datetime):
    """Per open round: leases still running and not yet answered (rankings are counted on the
    round itself, ``Round.n_rankings``, so this scan stays small)."""
    return (
        select(Assignment.round_id, func.count().label("leased"))
        .join(Round, Round.id == Assignment.round_id)
        .where(Round.status == "open", Assignment.status == "leased", Assignment.expires_at > now)
        .group_by(Assignment.round_id)
        .subquery()
    )


def lease(
    session: Session, annotator: Annotator, now: dt.datetime | None = None
) -> tuple[Assignment, Round, Campaign] | None:
    """The annotator's task: its running lease, else a new one on the round that most needs a
    ranking (largest quorum shortfall, then oldest) among the campaigns it may work on and has not
    yet met its quota of rankings in (``tasks_per_annotator``)."""
    now = now or utcnow()
    eligible = [Campaign.status == "running", Round.status == "open"]
    if annotator.campaign_id is not None:
        eligible.append(Round.campaign_id == annotator.campaign_id)
    if annotator.last_seen is None or now - annotator.last_seen > LAST_SEEN_EVERY:
        annotator.last_seen = now  # throttled: one write a minute, not one per request
    current = session.execute(
        select(Assignment, Round, Campaign)
        .join(Round, Round.id == Assignment.round_id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(
            Assignment.annotator_id == annotator.id,
            Assignment.status == "leased",
            Assignment.expires_at > now,
            *eligible,
        )
        .order_by(Assignment.created_at)
        .limit(1)
    ).first()
    if current is not None:
        session.commit()
        return current[0], current[1], current[2]
    leased = _active_leases(now)
    quorum = Campaign.settings["annotators_per_round"].as_integer()
    need = quorum - Round.n_rankings - func.coalesce(leased.c.leased, 0)
    mine = select(Assignment.id).where(
        Assignment.round_id == Round.id, Assignment.annotator_id == annotator.id
    )
    ranked_round = aliased(Round)
    done_here = (
        select(func.count())
        .select_from(Ranking)
        .join(ranked_round, ranked_round.id == Ranking.round_id)
        .where(Ranking.annotator_id == annotator.id, ranked_round.campaign_id == Round.campaign_id)
        .scalar_subquery()
    )
    quota = Campaign.settings["tasks_per_annotator"].as_integer()
    row = session.execute(
        select(Round, Campaign)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .outerjoin(leased, leased.c.round_id == Round.id)
        .where(*eligible, need > 0, ~mine.exists(), done_here < quota)
        .order_by(need.desc(), Round.opened_at, Round.id)
        .limit(1)
    ).first()
    if row is None:
        session.commit()
        return None
    round_, campaign = row
    assignment = Assignment(
        round_id=round_.id,
        annotator_id=annotator.id,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=float(campaign.settings["lease_s"])),
    )
    session.add(assignment)
    try:
        session.commit()
    except IntegrityError:  # the same annotator leased this round in a parallel request
        session.rollback()
        return lease(session, annotator, now)
    return assignment, round_, campaign


@dataclass(frozen=True)
class ImageView:
    """A round's image as the hot paths need it (a detached, immutable copy of the row)."""

    id: str
    position: int
    index: int
    role: str
    key: str
    thumb_key: str | None


_IMAGES: OrderedDict[tuple[str, int], tuple[ImageView, ...]] = OrderedDict()
_IMAGES_LOCK = threading.Lock()
_IMAGES_MAX = 4096


def round_images(session: Session, round_: Round) -> tuple[ImageView, ...]:
    """The images of an opened round, cached per process: they never change once the round is
    open, and (campaign id, round number) names them uniquely in any database."""
    cache_key = (round_.campaign_id, round_.number)
    with _IMAGES_LOCK:
        cached = _IMAGES.get(cache_key)
    if cached is not None:
        return cached
    rows = session.execute(
        select(Image.id, Image.position, Image.index, Image.role, Image.key, Image.thumb_key)
        .where(Image.round_id == round_.id)
        .order_by(Image.position)
    ).all()
    images = tuple(ImageView(*row) for row in rows)
    if images and round_.status != "rendering":
        with _IMAGES_LOCK:
            _IMAGES[cache_key] = images
            while len(_IMAGES) > _IMAGES_MAX:
                _IMAGES.popitem(last=False)
    return images


def display_order(annotator_id: str, round_: Round, images: Sequence[ImageView]) -> list[ImageView]:
    """The round's images in this annotator's order: shuffled, the same on every reload."""
    shuffled = list(images)
    random.Random(f"{annotator_id}:{round_.id}").shuffle(shuffled)
    return shuffled


def parse_order(
    order: list[Any], images: Sequence[Image | ImageView], k: int | None, allow_ties: bool
) -> list[Any]:
    """Image ids (best first; a list = tied ids) -> image positions, or InvalidInput saying why."""
    by_id = {image.id: image.position for image in images}
    seen: set[str] = set()
    positions: list[Any] = []
    for element in order:
        group = element if isinstance(element, list) else [element]
        if isinstance(element, list) and not allow_ties:
            raise InvalidInput("this campaign does not allow ties: send a flat list of image ids")
        if not group:
            raise InvalidInput("an empty tie group: list at least one image id in it")
        for image_id in group:
            if image_id not in by_id:
                raise InvalidInput(f"image {image_id!r} is not part of this task")
            if image_id in seen:
                raise InvalidInput(f"image {image_id!r} is ranked twice")
            seen.add(image_id)
        ids = [by_id[i] for i in group]
        positions.append(ids if isinstance(element, list) else ids[0])
    required = min(k, len(images)) if k else len(images)
    # A full ranking of n items is determined by its first n - 1.
    if len(seen) < min(required, len(images) - 1):
        raise InvalidInput(
            f"rank at least {min(required, len(images) - 1)} images (got {len(seen)}), best first"
        )
    return positions


def attention_passed(positions: list[Any], images: Sequence[Image | ImageView]) -> bool | None:
    """False when the degraded copy is ranked above any candidate (ranked or not)."""
    attention = {i.position for i in images if i.role == "attention"}
    if not attention:
        return None
    flat = [p if isinstance(p, list) else [p] for p in positions]
    for rank, group in enumerate(flat):
        if attention & set(group):
            below = {p for g in flat[rank + 1 :] for p in g}
            ranked = {p for g in flat for p in g}
            unranked_candidates = {i.position for i in images} - ranked - attention
            return not (below - attention) and not unranked_candidates
    return True


@dataclass(frozen=True)
class Submitted:
    """A stored ranking, and whether it completed its round's quorum."""

    ranking_id: int
    round_id: int
    late: bool
    attention_passed: bool | None
    quorum_reached: bool


def submit(
    session: Session,
    annotator: Annotator,
    task_id: str,
    order: list[Any],
    now: dt.datetime | None = None,
) -> Submitted:
    """Commit one ranking, or raise (404 unknown, 403 foreign, 409 repeated, 410 late)."""
    now = now or utcnow()
    row = session.execute(
        select(Assignment, Round, Campaign)
        .join(Round, Round.id == Assignment.round_id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Assignment.id == task_id)
    ).first()
    if row is None:
        raise NotFound(f"no task {task_id!r}")
    assignment, round_, campaign = row
    settings = campaign.settings
    quorum = int(settings["annotators_per_round"])
    if assignment.annotator_id != annotator.id:
        raise Forbidden("this task was given to another annotator")
    if assignment.status == "submitted":
        raise Conflict("this task already has your ranking; fetch the next task")
    if round_.status != "open":
        raise Gone(f"round {round_.number} is {round_.status}: fetch the next task")
    late = assignment.expires_at <= now
    if late:
        others_leased = session.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(
                Assignment.round_id == round_.id,
                Assignment.id != assignment.id,
                Assignment.status == "leased",
                Assignment.expires_at > now,
            )
        )
        if round_.n_rankings + (others_leased or 0) >= quorum:
            raise Gone("your lease expired and the task went to someone else")
    images = round_images(session, round_)
    positions = parse_order(order, images, settings.get("k"), settings["allow_ties"])
    passed = attention_passed(positions, images)
    claimed = session.execute(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.status == "leased")
        .values(status="submitted")
        .execution_options(synchronize_session=False)
    )
    if _rowcount(claimed) != 1:
        session.rollback()
        raise Conflict("this task already has your ranking; fetch the next task")
    ranking = Ranking(
        assignment_id=assignment.id,
        round_id=round_.id,
        annotator_id=annotator.id,
        order=list(order),
        positions=positions,
        attention_passed=passed,
        late=late,
        created_at=now,
    )
    session.add(ranking)
    values: dict[str, Any] = {"tasks_done": Annotator.tasks_done + 1, "last_seen": now}
    if passed is False:
        values["attention_failed"] = Annotator.attention_failed + 1
    tasks_done, code = session.execute(
        update(Annotator)
        .where(Annotator.id == annotator.id)
        .values(**values)
        .returning(Annotator.tasks_done, Annotator.completion_code)
        .execution_options(synchronize_session=False)
    ).one()
    if code is None and tasks_done >= int(settings["tasks_per_annotator"]):
        session.execute(
            update(Annotator)
            .where(Annotator.id == annotator.id)
            .values(completion_code=campaign.completion_code)
            .execution_options(synchronize_session=False)
        )
    n_rankings = session.execute(
        update(Round)
        .where(Round.id == round_.id)
        .values(n_rankings=Round.n_rankings + 1, last_ranking_at=now)
        .returning(Round.n_rankings)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("this task already has your ranking; fetch the next task") from None
    return Submitted(ranking.id, round_.id, late, passed, n_rankings >= quorum)


# -- closing, consensus, advancing --------------------------------------------------------------


def close_if_ready(session: Session, round_id: int, now: dt.datetime | None = None) -> Outcome:
    """Close the round when its quorum is in; else nothing."""
    round_ = session.get(Round, round_id)
    if round_ is None or round_.status != "open":
        session.rollback()
        return Outcome()
    campaign = session.get(Campaign, round_.campaign_id)
    assert campaign is not None
    n = session.scalar(
        select(func.count()).select_from(Ranking).where(Ranking.round_id == round_id)
    )
    if (n or 0) < int(campaign.settings["annotators_per_round"]):
        session.rollback()
        return Outcome()
    return close_round(session, round_, now)


def close_round(session: Session, round_: Round, now: dt.datetime | None = None) -> Outcome:
    """Close an open round: consensus, then the next render request or the campaign's end."""
    from service.consensus import AnnotatorReliability, aggregate

    now = now or utcnow()
    campaign = get_campaign(session, round_.campaign_id, lock=True)
    if not _cas(session, round_, "open", status="closed", closed_at=now):
        session.rollback()
        return Outcome()
    rankings = session.scalars(
        select(Ranking).where(Ranking.round_id == round_.id).order_by(Ranking.id)
    ).all()
    images = list(round_.images)
    settings = campaign.settings
    reliability = (
        AnnotatorReliability.from_dict(campaign.reliability)
        if campaign.reliability
        else AnnotatorReliability()
    )
    attention = [i.position for i in images if i.role == "attention"]
    result = aggregate(
        [(r.annotator_id, r.positions) for r in rankings],
        len(images),
        method=settings.get("consensus_method", "auto"),
        reliability=reliability,
        known_worst=attention or None,
    )
    campaign.reliability = reliability.to_dict()
    order = [int(p) for p in result.order]
    pairwise = _as_list(getattr(result, "pairwise", None))
    weights = {str(a): float(w) for a, w in dict(result.weights).items()}
    session.add(
        Consensus(
            round_id=round_.id,
            method=str(settings.get("consensus_method", "auto")),
            order=order,
            scores=_as_list(result.scores) or [],
            weights=weights,
            agreement=_as_float(result.agreement),
            pairwise=pairwise,
            n_rankings=len(rankings),
        )
    )
    for annotator_id, weight in weights.items():
        session.execute(
            update(Annotator)
            .where(Annotator.id == annotator_id)
            .values(weight=weight)
            .execution_options(synchronize_session=False)
        )
    audit(
        session,
        "round_closed",
        campaign.id,
        round_.number,
        n_rankings=len(rankings),
        agreement=_as_float(result.agreement),
        winner=order[0] if order else None,
    )
    outcome = Outcome(events=["closed"])
    if campaign.status in ("stopped", "finished", "failed"):
        pass
    elif round_.number + 1 >= int(settings["rounds"]):
        campaign.status, campaign.finished_at = "finished", now
        audit(session, "campaign_finished", campaign.id, round_.number)
        outcome.events.append("finished")
    else:
        feed = candidate_feed(order, pairwise, images, settings.get("consensus_feed", "order"))
        outcome.renders.append(_new_round(session, campaign, round_.number + 1, round_, feed))
    session.commit()
    return outcome


def candidate_feed(
    order: list[int], pairwise: list[list[float]] | None, images: list[Image], feed: str
) -> dict[str, Any]:
    """The consensus restricted to candidates, in optimizer indices (what the worker tells)."""
    candidates = sorted((i for i in images if i.role == "candidate"), key=lambda i: i.index)
    by_position = {i.position: i for i in candidates}
    result: dict[str, Any] = {
        "order": [by_position[p].index for p in order if p in by_position],
        "pairwise": None,
    }
    if feed == "pairwise" and pairwise is not None:
        matrix = [[float(pairwise[a.position][b.position]) for b in candidates] for a in candidates]
        # Evidence only about the attention image says nothing about the candidates: the
        # optimizer refuses an empty matrix, so fall back to the order then.
        if sum(map(sum, matrix)) > 0:
            result["pairwise"] = matrix
    return result


def sweep(session: Session, now: dt.datetime | None = None) -> Outcome:
    """Deadlines and lost renders: close rounds whose quorum is in, extend those short of it,
    and re-send renders that never left or never came back (the worker's task is idempotent)."""
    now = now or utcnow()
    outcome = Outcome()
    due = session.scalars(
        select(Round.id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Campaign.status == "running", Round.status == "open", Round.deadline <= now)
    ).all()
    session.rollback()
    for round_id in due:
        closed = close_if_ready(session, round_id, now)
        outcome.renders += closed.renders
        if closed.events:
            outcome.events += closed.events
            continue
        round_ = session.get(Round, round_id)
        if round_ is None or round_.status != "open":
            session.rollback()
            continue
        campaign = session.get(Campaign, round_.campaign_id)
        assert campaign is not None
        seconds = float(campaign.settings["round_deadline_s"])
        if _cas(
            session,
            round_,
            "open",
            deadline=now + dt.timedelta(seconds=seconds),
            extensions=round_.extensions + 1,
        ):
            n = session.scalar(
                select(func.count()).select_from(Ranking).where(Ranking.round_id == round_id)
            )
            audit(
                session,
                "round_extended",
                campaign.id,
                round_.number,
                n_rankings=n,
                quorum=campaign.settings["annotators_per_round"],
            )
            outcome.events.append("extended")
        session.commit()
    stuck = session.execute(
        select(Round, Campaign)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Round.status == "rendering", Campaign.status.in_(("running", "paused")))
    ).all()
    for round_, campaign in stuck:
        timeout = dt.timedelta(seconds=float(campaign.settings.get("render_timeout_s", 900)))
        # Never sent (the broker was down at commit): retry after a short grace.
        sent = round_.render_enqueued_at or (round_.created_at - timeout + UNSENT_GRACE)
        if sent + timeout <= now and _cas(session, round_, "rendering", render_enqueued_at=now):
            audit(session, "round_render_resent", campaign.id, round_.number)
            outcome.renders.append(render_request(campaign, round_))
    session.commit()
    return outcome


def _as_list(value: Any) -> Any:
    return None if value is None else np.asarray(value, dtype=float).tolist()


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


__all__ = [
    "ImageView",
    "Outcome",
    "RenderRequest",
    "Submitted",
    "attention_passed",
    "candidate_feed",
    "close_if_ready",
    "close_round",
    "display_order",
    "lease",
    "parse_order",
    "pause",
    "resume",
    "round_failed",
    "round_images",
    "round_rendered",
    "start",
    "stop",
    "submit",
    "sweep",
]
