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
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    String,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rankloop.core.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, Unauthorized
from service.models import (
    Annotator,
    Assignment,
    AuditEvent,
    Campaign,
    Consensus,
    Image,
    Ranking,
    Round,
    new_short_id,
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


def winner_image(round_: Round) -> Image | None:
    """The candidate the round's consensus put first (the attention image never counts)."""
    if round_.consensus is None:
        return None
    by_position = {image.position: image for image in round_.images}
    for position in round_.consensus.order:
        image = by_position.get(position)
        if image is not None and image.role == "candidate":
            return image
    return None


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
        best_key=(result.get("best") or {}).get("key"),
        best_thumb_key=(result.get("best") or {}).get("thumb_key"),
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


def lease(
    session: Session, annotator: Annotator, now: dt.datetime | None = None
) -> tuple[Assignment, Round, Campaign] | None:
    """The annotator's task: its running lease, else a new one on the round that most needs a
    ranking (largest quorum shortfall, then oldest) among the campaigns it may work on and has not
    yet met its quota of rankings in (``tasks_per_annotator``). The rows, for callers that want
    them; ``GET /api/tasks/next`` calls :func:`lease_by_token` itself."""
    found = lease_by_token(session, annotator.token_hash, now)
    if found is None:
        return None
    assignment = session.get(Assignment, found.task_id, populate_existing=True)  # may be renewed
    round_ = session.get(Round, found.round.id)
    campaign = session.get(Campaign, found.round.campaign_id)
    assert assignment is not None and round_ is not None and campaign is not None
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


def round_images(session: Session, round_: Round | RoundRef) -> tuple[ImageView, ...]:
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


def display_order(
    annotator_id: str, round_: Round | RoundRef, images: Sequence[ImageView]
) -> list[ImageView]:
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


# -- the annotator's hot path ----------------------------------------------------------------
#
# GET /api/tasks/next and POST /api/tasks/<id>/ranking run these: Core statements on the tables
# (no ORM objects), as few round trips as the database allows, and what never changes cached
# per process (a campaign's prompt, settings and completion code; a round's images). Anything
# unusual (an unknown token, a foreign, repeated or late task, a closed round) falls back to
# the full checks of :func:`lease` and :func:`submit` above, so the answers stay the same.

_ANNOTATORS = cast(Table, Annotator.__table__)
_ASSIGNMENTS = cast(Table, Assignment.__table__)
_ROUNDS = cast(Table, Round.__table__)
_CAMPAIGNS = cast(Table, Campaign.__table__)
_RANKINGS = cast(Table, Ranking.__table__)


@dataclass(frozen=True)
class CampaignView:
    """The part of a campaign the hot path reads: fixed at creation, so cached per process."""

    id: str
    prompt: str
    settings: dict[str, Any]
    completion_code: str


@dataclass(frozen=True)
class RoundRef:
    """A round as the hot path names it (``status`` for :func:`round_images`'s cache rule)."""

    id: int
    campaign_id: str
    number: int
    status: str = "open"


@dataclass(frozen=True)
class Lease:
    """A running lease, as ``GET /api/tasks/next`` shows it."""

    annotator_id: str
    task_id: str
    expires_at: dt.datetime
    round: RoundRef
    campaign: CampaignView


_CAMPAIGN_VIEWS: OrderedDict[str, CampaignView] = OrderedDict()


def campaign_view(session: Session, campaign_id: str) -> CampaignView:
    """A campaign's prompt, settings and completion code, cached per process (ids are random
    128-bit values, so one cache serves any number of databases)."""
    with _IMAGES_LOCK:
        cached = _CAMPAIGN_VIEWS.get(campaign_id)
    if cached is not None:
        return cached
    c = _CAMPAIGNS.c
    row = session.execute(
        select(c.id, c.prompt, c.settings, c.completion_code).where(c.id == campaign_id)
    ).first()
    if row is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    view = CampaignView(*row)
    with _IMAGES_LOCK:
        _CAMPAIGN_VIEWS[campaign_id] = view
        while len(_CAMPAIGN_VIEWS) > _IMAGES_MAX:
            _CAMPAIGN_VIEWS.popitem(last=False)
    return view


def _current_lease_statement(now_param: Any) -> Any:
    """The annotator (by token hash) and its running lease, if any, in one statement."""
    a, asg, r, c = _ANNOTATORS, _ASSIGNMENTS, _ROUNDS, _CAMPAIGNS
    running = asg.join(r, r.c.id == asg.c.round_id).join(c, c.c.id == r.c.campaign_id)
    return (
        select(
            a.c.id,
            a.c.campaign_id,
            a.c.last_seen,
            asg.c.id.label("task_id"),
            asg.c.expires_at,
            r.c.id.label("round_id"),
            r.c.number,
            r.c.campaign_id.label("round_campaign_id"),
        )
        .select_from(
            a.outerjoin(
                running,
                (asg.c.annotator_id == a.c.id)
                & (asg.c.status == "leased")
                & (asg.c.expires_at > now_param)
                & (r.c.status == "open")
                & (c.c.status == "running")
                & ((a.c.campaign_id.is_(None)) | (r.c.campaign_id == a.c.campaign_id)),
            )
        )
        .where(a.c.token_hash == bindparam("token_hash"))
        .order_by(asg.c.created_at)
        .limit(1)
    )


_CURRENT_LEASE = _current_lease_statement(bindparam("now", type_=DateTime))


def _round_to_lease(own_campaign: bool, *columns: Any) -> Any:
    """The open round that most needs this annotator's ranking (see :func:`lease`)."""
    asg, r, c, rk = _ASSIGNMENTS, _ROUNDS, _CAMPAIGNS, _RANKINGS
    now = bindparam("now", type_=DateTime)
    annotator_id = bindparam("annotator_id", type_=String)
    leased = (
        select(asg.c.round_id, func.count().label("leased"))
        .join(r, r.c.id == asg.c.round_id)
        .where(r.c.status == "open", asg.c.status == "leased", asg.c.expires_at > now)
        .group_by(asg.c.round_id)
        .subquery()
    )
    quorum = c.c.settings["annotators_per_round"].as_integer()
    need = quorum - r.c.n_rankings - func.coalesce(leased.c.leased, 0)
    # A round this annotator ranked, or holds a running lease on, is not offered again; one
    # whose lease ran out unused is (else a small team's round could never reach its quorum).
    mine = select(asg.c.id).where(
        asg.c.round_id == r.c.id,
        asg.c.annotator_id == annotator_id,
        (asg.c.status != "leased") | (asg.c.expires_at > now),
    )
    ranked_round = r.alias("ranked_round")
    done_here = (
        select(func.count())
        .select_from(rk.join(ranked_round, ranked_round.c.id == rk.c.round_id))
        .where(rk.c.annotator_id == annotator_id, ranked_round.c.campaign_id == r.c.campaign_id)
        .scalar_subquery()
    )
    eligible = [c.c.status == "running", r.c.status == "open"]
    if own_campaign:
        eligible.append(r.c.campaign_id == bindparam("annotator_campaign_id"))
    return (
        select(*(columns or (r.c.id, r.c.number, r.c.campaign_id)))
        .select_from(r)
        .join(c, c.c.id == r.c.campaign_id)
        .outerjoin(leased, leased.c.round_id == r.c.id)
        .where(
            *eligible,
            need > 0,
            ~mine.exists(),
            done_here < c.c.settings["tasks_per_annotator"].as_integer(),
        )
        .order_by(need.desc(), r.c.opened_at, r.c.id)
        .limit(1)
    )


_ROUND_TO_LEASE = {True: _round_to_lease(True), False: _round_to_lease(False)}


def _renew_expired_lease() -> dict[str, Any]:
    """``ON CONFLICT`` arguments that renew this annotator's own lapsed lease on the round
    (same task id, so a page still showing it may submit) and leave any other row alone."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    excluded = pg_insert(_ASSIGNMENTS).excluded
    return {
        "index_elements": ["round_id", "annotator_id"],
        "set_": {"created_at": excluded.created_at, "expires_at": excluded.expires_at},
        "where": (_ASSIGNMENTS.c.status == "leased")
        & (_ASSIGNMENTS.c.expires_at <= excluded.created_at),
    }


_RENEW_EXPIRED_LEASE = _renew_expired_lease()


def _lease_round_postgres(own_campaign: bool) -> Any:
    """PostgreSQL: choose the round and insert the lease in one statement; the lease with its
    round, or no row (nothing to lease, or a parallel request leased that round first)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    asg, r, c = _ASSIGNMENTS, _ROUNDS, _CAMPAIGNS
    now = bindparam("now", type_=DateTime)
    lease_s = c.c.settings["lease_s"].as_float()
    choice = _round_to_lease(
        own_campaign,
        bindparam("task_id", type_=String),
        r.c.id,
        bindparam("annotator_id", type_=String),
        literal("leased", String),
        now,
        now + func.make_interval(0, 0, 0, 0, 0, 0, lease_s),
    )
    inserted = (
        pg_insert(asg)
        .from_select(
            ["id", "round_id", "annotator_id", "status", "created_at", "expires_at"], choice
        )
        .on_conflict_do_update(**_RENEW_EXPIRED_LEASE)
        .returning(asg.c.id, asg.c.expires_at, asg.c.round_id)
        .cte("inserted")
    )
    return select(inserted.c.id, inserted.c.expires_at, r.c.id, r.c.number, r.c.campaign_id).join(
        r, r.c.id == inserted.c.round_id
    )


_LEASE_ROUND_POSTGRES = {True: _lease_round_postgres(True), False: _lease_round_postgres(False)}
_TOUCH_ANNOTATOR = (
    update(_ANNOTATORS)
    .where(_ANNOTATORS.c.id == bindparam("annotator_id"))
    .values(last_seen=bindparam("now", type_=DateTime))
)
_COMPILED: dict[int, tuple[str, dict[str, Any]]] = {}


def _run_on_driver(session: Session, statement: Any, **params: Any) -> Any:
    """Run a statement straight on the session's psycopg connection (a cursor): compiled once
    per process, then no SQLAlchemy on the way. For the hot path's fixed statements only."""
    compiled = _COMPILED.get(id(statement))
    if compiled is None:
        done = statement.compile(dialect=session.get_bind().dialect)
        compiled = _COMPILED[id(statement)] = (done.string, dict(done.params))
    sql, defaults = compiled
    driver = session.connection().connection.driver_connection
    assert driver is not None
    return driver.execute(sql, {**defaults, **params})


def _insert_with_on_conflict(session: Session, table: Table) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""
    if _is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert as postgres_insert

        return postgres_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def lease_by_token(
    session: Session, token_hash: str, now: dt.datetime | None = None
) -> Lease | None:
    """:func:`lease` for the annotator with this token hash: the annotator with its running
    lease, in one statement; else a new lease on the round that most needs a ranking (one
    more statement on PostgreSQL, two elsewhere), inserted with ``ON CONFLICT DO NOTHING``
    since a parallel request may take it first. On PostgreSQL each statement runs on its own
    (autocommit): none needs to see another's uncommitted write. Raises Unauthorized for an
    unknown token."""
    now = now or utcnow()
    if _is_postgres(session) and not session.in_transaction():
        return _lease_postgres(session, token_hash, now)
    return _lease_in_steps(session, token_hash, now)


def _unknown_token() -> Unauthorized:
    return Unauthorized("unknown annotator token: open the task link you were given again")


def _lease_postgres(session: Session, token_hash: str, now: dt.datetime) -> Lease | None:
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    looked_again = False
    for _attempt in range(3):
        row = _run_on_driver(session, _CURRENT_LEASE, token_hash=token_hash, now=now).fetchone()
        if row is None:
            raise _unknown_token()
        annotator_id, own_campaign_id, last_seen, task_id, expires_at = row[:5]
        if last_seen is None or now - last_seen > LAST_SEEN_EVERY:
            # Throttled: one write a minute, not one per request.
            _run_on_driver(session, _TOUCH_ANNOTATOR, annotator_id=annotator_id, now=now)
        if task_id is not None:
            round_ = RoundRef(row[5], row[7], row[6])
            return Lease(
                annotator_id,
                task_id,
                expires_at,
                round_,
                campaign_view(session, round_.campaign_id),
            )
        if looked_again:
            return None
        params: dict[str, Any] = {
            "now": now,
            "annotator_id": annotator_id,
            "task_id": new_short_id(),
        }
        if own_campaign_id is not None:
            params["annotator_campaign_id"] = own_campaign_id
        statement = _LEASE_ROUND_POSTGRES[own_campaign_id is not None]
        leased = _run_on_driver(session, statement, **params).fetchone()
        if leased is not None:
            task_id, expires_at, round_id, number, campaign_id = leased
            round_ = RoundRef(round_id, campaign_id, number)
            return Lease(
                annotator_id, task_id, expires_at, round_, campaign_view(session, campaign_id)
            )
        # Nothing to lease, or a parallel request of this annotator leased that round between
        # the two statements: look for its lease once more before answering "nothing".
        looked_again = True
    raise Conflict("could not lease a task for a busy annotator; fetch the next task again")


def _lease_in_steps(session: Session, token_hash: str, now: dt.datetime) -> Lease | None:
    looked_again = False
    for _attempt in range(3):
        row = session.execute(_CURRENT_LEASE, {"token_hash": token_hash, "now": now}).first()
        if row is None:
            session.rollback()
            raise _unknown_token()
        annotator_id, own_campaign_id, last_seen = row[0], row[1], row[2]
        if last_seen is None or now - last_seen > LAST_SEEN_EVERY:
            session.execute(_TOUCH_ANNOTATOR, {"annotator_id": annotator_id, "now": now})
        if row.task_id is not None:
            session.commit()
            round_ = RoundRef(row.round_id, row.round_campaign_id, row.number)
            return Lease(
                annotator_id,
                row.task_id,
                row.expires_at,
                round_,
                campaign_view(session, round_.campaign_id),
            )
        if looked_again:
            session.commit()
            return None
        params: dict[str, Any] = {"now": now, "annotator_id": annotator_id}
        if own_campaign_id is not None:
            params["annotator_campaign_id"] = own_campaign_id
        target = session.execute(_ROUND_TO_LEASE[own_campaign_id is not None], params).first()
        if target is None:
            session.commit()
            looked_again = True  # (see _lease_postgres)
            continue
        round_ = RoundRef(target.id, target.campaign_id, target.number)
        campaign = campaign_view(session, round_.campaign_id)
        expires_at = now + dt.timedelta(seconds=float(campaign.settings["lease_s"]))
        task_id = new_short_id()
        inserted = session.execute(
            _insert_with_on_conflict(session, _ASSIGNMENTS)
            .values(
                id=task_id,
                round_id=round_.id,
                annotator_id=annotator_id,
                status="leased",
                created_at=now,
                expires_at=expires_at,
            )
            .on_conflict_do_update(**_RENEW_EXPIRED_LEASE)
            .returning(_ASSIGNMENTS.c.id)
        ).first()
        session.commit()
        if inserted is not None:  # a new lease, or this annotator's lapsed one renewed
            return Lease(annotator_id, inserted.id, expires_at, round_, campaign)
        # The same annotator leased this round in a parallel request: serve that lease.
    raise Conflict("could not lease a task for a busy annotator; fetch the next task again")


_CLAIM = (
    update(_ASSIGNMENTS)
    .where(
        _ASSIGNMENTS.c.id == bindparam("task_id"),
        _ASSIGNMENTS.c.status == "leased",
        _ASSIGNMENTS.c.expires_at > bindparam("now", type_=DateTime),
        _ASSIGNMENTS.c.annotator_id
        == select(_ANNOTATORS.c.id)
        .where(_ANNOTATORS.c.token_hash == bindparam("token_hash"))
        .scalar_subquery(),
    )
    .values(status="submitted")
    .returning(_ASSIGNMENTS.c.round_id, _ASSIGNMENTS.c.annotator_id)
)
_COUNT_RANKING = (
    update(_ROUNDS)
    .where(_ROUNDS.c.id == bindparam("round_id"), _ROUNDS.c.status == "open")
    .values(n_rankings=_ROUNDS.c.n_rankings + 1, last_ranking_at=bindparam("now", type_=DateTime))
    .returning(_ROUNDS.c.campaign_id, _ROUNDS.c.number, _ROUNDS.c.n_rankings)
)
_CREDIT_ANNOTATOR = (
    update(_ANNOTATORS)
    .where(_ANNOTATORS.c.id == bindparam("annotator_id"))
    .values(
        tasks_done=_ANNOTATORS.c.tasks_done + 1,
        last_seen=bindparam("now", type_=DateTime),
        attention_failed=_ANNOTATORS.c.attention_failed + bindparam("failed", type_=Integer),
        # The quota met with this ranking: the crowd platform's completion code, once.
        completion_code=case(
            (
                _ANNOTATORS.c.completion_code.is_(None)
                & (_ANNOTATORS.c.tasks_done + 1 >= bindparam("quota", type_=Integer)),
                bindparam("code", type_=String),
            ),
            else_=_ANNOTATORS.c.completion_code,
        ),
    )
)
_INSERT_RANKING = insert(_RANKINGS).returning(_RANKINGS.c.id)


def submit_by_token(
    session: Session,
    token_hash: str,
    task_id: str,
    order: list[Any],
    now: dt.datetime | None = None,
) -> Submitted:
    """:func:`submit` for the annotator with this token hash, in as few round trips as the
    database allows. When the lease is not running, or not this annotator's, or its round is
    not open, nothing is written and :func:`submit` finds out why (401, 404, 403, 409, 410, or
    a late ranking that is still welcome), so every answer is the one it always was."""
    now = now or utcnow()
    if _is_postgres(session) and not session.in_transaction():
        return _submit_postgres(session, token_hash, task_id, order, now)
    return _submit_in_steps(session, token_hash, task_id, order, now)


def _full_checks(
    session: Session, token_hash: str, task_id: str, order: list[Any], now: dt.datetime
) -> Submitted:
    session.rollback()
    annotator = session.scalar(select(Annotator).where(Annotator.token_hash == token_hash))
    if annotator is None:
        raise Unauthorized("unknown annotator token: open the task link you were given again")
    return submit(session, annotator, task_id, order, now)


def _submit_in_steps(
    session: Session, token_hash: str, task_id: str, order: list[Any], now: dt.datetime
) -> Submitted:
    """One short transaction: claim the lease (an ``UPDATE`` that matches only a running lease
    of this annotator, and locks it), count the ranking on its round (only while the round is
    open; locks the round row), store it, credit the annotator; commit."""
    claimed = session.execute(
        _CLAIM, {"task_id": task_id, "token_hash": token_hash, "now": now}
    ).first()
    counted = None
    if claimed is not None:
        counted = session.execute(
            _COUNT_RANKING, {"round_id": claimed.round_id, "now": now}
        ).first()
    if claimed is None or counted is None:
        return _full_checks(session, token_hash, task_id, order, now)
    round_ = RoundRef(claimed.round_id, counted.campaign_id, counted.number)
    campaign = campaign_view(session, round_.campaign_id)
    settings = campaign.settings
    images = round_images(session, round_)
    try:
        positions = parse_order(order, images, settings.get("k"), settings["allow_ties"])
    except InvalidInput:
        session.rollback()
        raise
    passed = attention_passed(positions, images)
    ranking_id = session.execute(
        _INSERT_RANKING,
        {
            "assignment_id": task_id,
            "round_id": round_.id,
            "annotator_id": claimed.annotator_id,
            "order": list(order),
            "positions": positions,
            "attention_passed": passed,
            "late": False,
            "created_at": now,
        },
    ).scalar_one()
    session.execute(
        _CREDIT_ANNOTATOR,
        {
            "annotator_id": claimed.annotator_id,
            "now": now,
            "failed": int(passed is False),
            "quota": int(settings["tasks_per_annotator"]),
            "code": campaign.completion_code,
        },
    )
    session.commit()
    quorum = int(settings["annotators_per_round"])
    return Submitted(ranking_id, round_.id, False, passed, counted.n_rankings >= quorum)


_TASK_OF_TOKEN = (
    select(_ANNOTATORS.c.id, _ASSIGNMENTS.c.round_id, _ROUNDS.c.campaign_id, _ROUNDS.c.number)
    .select_from(
        _ANNOTATORS.outerjoin(
            _ASSIGNMENTS,
            (_ASSIGNMENTS.c.id == bindparam("task_id"))
            & (_ASSIGNMENTS.c.annotator_id == _ANNOTATORS.c.id),
        ).outerjoin(_ROUNDS, _ROUNDS.c.id == _ASSIGNMENTS.c.round_id)
    )
    .where(_ANNOTATORS.c.token_hash == bindparam("token_hash"))
)

# Everything a stored ranking changes, in one statement (so, on its own, one transaction).
# `target` locks the lease and its round and re-checks both after any wait (READ COMMITTED
# re-evaluates a locked row's conditions on its newest version): a parallel submission of
# the same task, or a round closed meanwhile, leaves it empty, and then nothing is written.
_SUBMIT_POSTGRES = text("""
WITH target AS (
    SELECT assignments.id, assignments.round_id, assignments.annotator_id
    FROM assignments JOIN rounds ON rounds.id = assignments.round_id
    WHERE assignments.id = :task_id AND assignments.annotator_id = :annotator_id
      AND assignments.status = 'leased' AND assignments.expires_at > :now
      AND rounds.status = 'open'
    FOR UPDATE OF assignments, rounds
), claimed AS (
    UPDATE assignments SET status = 'submitted'
    WHERE id IN (SELECT id FROM target) RETURNING id
), counted AS (
    UPDATE rounds SET n_rankings = n_rankings + 1, last_ranking_at = :now
    WHERE id IN (SELECT round_id FROM target) RETURNING n_rankings
), credited AS (
    UPDATE annotators SET
        tasks_done = tasks_done + 1,
        last_seen = :now,
        attention_failed = attention_failed + :failed,
        completion_code = CASE WHEN completion_code IS NULL AND tasks_done + 1 >= :quota
                               THEN CAST(:code AS VARCHAR) ELSE completion_code END
    WHERE id IN (SELECT annotator_id FROM target) RETURNING id
), stored AS (
    INSERT INTO rankings (assignment_id, round_id, annotator_id, "order", positions,
                          attention_passed, late, created_at)
    SELECT id, round_id, annotator_id, CAST(:order AS JSON), CAST(:positions AS JSON),
           CAST(:passed AS BOOLEAN), false, :now
    FROM target
    RETURNING id
)
SELECT stored.id, counted.n_rankings FROM stored, counted, claimed, credited
""").bindparams(
    bindparam("now", type_=DateTime),
    bindparam("failed", type_=Integer),
    bindparam("quota", type_=Integer),
    bindparam("order", type_=JSON),
    bindparam("positions", type_=JSON),
)


def _submit_postgres(
    session: Session, token_hash: str, task_id: str, order: list[Any], now: dt.datetime
) -> Submitted:
    """Two statements, each its own transaction: the annotator with the task's round (read
    only), then :data:`_SUBMIT_POSTGRES`."""
    from psycopg.types.json import Json  # (PostgreSQL's driver: imported only when used)

    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    task = _run_on_driver(
        session, _TASK_OF_TOKEN, task_id=task_id, token_hash=token_hash
    ).fetchone()
    if task is None or task[1] is None:
        return _full_checks(session, token_hash, task_id, order, now)
    annotator_id, round_id, campaign_id, number = task
    round_ = RoundRef(round_id, campaign_id, number)
    campaign = campaign_view(session, round_.campaign_id)
    settings = campaign.settings
    images = round_images(session, round_)
    try:
        positions = parse_order(order, images, settings.get("k"), settings["allow_ties"])
    except InvalidInput:  # a repeated or late task is told so first, as it always was
        return _full_checks(session, token_hash, task_id, order, now)
    passed = attention_passed(positions, images)
    stored = _run_on_driver(
        session,
        _SUBMIT_POSTGRES,
        task_id=task_id,
        annotator_id=annotator_id,
        now=now,
        failed=int(passed is False),
        quota=int(settings["tasks_per_annotator"]),
        code=campaign.completion_code,
        order=Json(list(order)),
        positions=Json(positions),
        passed=passed,
    ).fetchone()
    if stored is None:
        return _full_checks(session, token_hash, task_id, order, now)
    ranking_id, n_rankings = stored
    quorum = int(settings["annotators_per_round"])
    return Submitted(ranking_id, round_.id, False, passed, n_rankings >= quorum)


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
    from rankloop.core.consensus import AnnotatorReliability, aggregate

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
    "CampaignView",
    "ImageView",
    "Lease",
    "Outcome",
    "RenderRequest",
    "Submitted",
    "attention_passed",
    "candidate_feed",
    "close_if_ready",
    "close_round",
    "display_order",
    "lease",
    "lease_by_token",
    "parse_order",
    "pause",
    "resume",
    "round_failed",
    "round_images",
    "round_rendered",
    "start",
    "stop",
    "submit",
    "submit_by_token",
    "sweep",
]
