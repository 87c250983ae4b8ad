"""The coordinator's tables, as SQLAlchemy 2 typed models.

One campaign has many rounds; a round has its images, the tasks handed to annotators (table
``assignments``, each held under a lease), the rankings they submitted (immutable) and at most
one consensus. The names of these concepts are in the glossary of :mod:`service`.
Annotators belong to one campaign or to the shared pool (``campaign_id`` NULL). Every state
change leaves an :class:`AuditEvent`.

Timestamps are naive UTC (SQLite keeps no zone); :func:`utcnow` is the only clock.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from rankloop.core.campaign_settings import CampaignSettings
from rankloop.core.contracts import CampaignStatus, ImageRole, RoundStatus, TaskStatus


def utcnow() -> dt.datetime:
    """Now, as naive UTC (the form every timestamp column stores)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_id() -> str:
    """A random 128-bit id in hex: unguessable, so object keys under it are too."""
    return uuid.uuid4().hex


def new_short_id() -> str:
    return secrets.token_hex(8)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON}


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), default="")
    prompt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT, index=True)
    # Campaign settings exactly as validated by service.schemas.CampaignCreate (the stored JSON;
    # read them typed through `config`, rankloop.core.campaign_settings).
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    # AnnotatorReliability.to_dict(): evidence about annotators pooled over every round.
    # Deferred: it grows with the crowd, and only closing a round needs it.
    reliability: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None, deferred=True)
    completion_code: Mapped[str] = mapped_column(
        String(32), default=lambda: secrets.token_hex(4).upper()
    )
    owner_key_id: Mapped[int | None] = mapped_column(ForeignKey("owner_keys.id"), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    # The study this campaign is one prompt of (NULL: a campaign on its own), and its place in
    # the study's prompt list.
    study_id: Mapped[str | None] = mapped_column(ForeignKey("studies.id"), index=True, default=None)
    study_position: Mapped[int | None] = mapped_column(Integer, default=None)

    rounds: Mapped[list[Round]] = relationship(back_populates="campaign", order_by="Round.number")

    @property
    def config(self) -> CampaignSettings:
        """The stored ``settings``, typed: parsed once per loaded (or assigned) settings object,
        so a reassigned ``settings`` (``campaign.settings = {**campaign.settings, ...}``) or a
        refreshed row is parsed again. Keys an older row lacks take the model's defaults."""
        source = self.settings
        cached = self.__dict__.get("_config")
        if cached is None or cached[0] is not source:
            cached = (source, CampaignSettings.from_stored(source or {}))
            self.__dict__["_config"] = cached
        config: CampaignSettings = cached[1]
        return config

    def __init__(self, **fields: Any) -> None:
        # An owner-set completion code arrives with the validated settings; it is kept once, in
        # its column (the random default otherwise), not in the settings as well.
        settings = dict(fields.get("settings") or {})
        code = settings.pop("completion_code", None)
        if "settings" in fields:
            fields["settings"] = settings
        if code is not None:
            fields.setdefault("completion_code", code)
        super().__init__(**fields)


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("campaign_id", "number", name="uq_round_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str | None] = mapped_column(String(16), default=None)
    status: Mapped[str] = mapped_column(String(16), default=RoundStatus.RENDERING, index=True)
    # Bumped by every conditional transition: a stale writer's UPDATE matches no row.
    version: Mapped[int] = mapped_column(Integer, default=0)
    previous_state_key: Mapped[str | None] = mapped_column(String(300), default=None)
    state_key: Mapped[str | None] = mapped_column(String(300), default=None)
    manifest_key: Mapped[str | None] = mapped_column(String(300), default=None)
    # The current best: the optimizer's own point rendered clean with the round (not shown to
    # annotators; not the round's winner, which its consensus picks among the candidates).
    best_key: Mapped[str | None] = mapped_column(String(300), default=None)
    best_thumb_key: Mapped[str | None] = mapped_column(String(300), default=None)
    render_task_id: Mapped[str | None] = mapped_column(String(64), default=None)  # Celery job id
    render_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # ConsensusFeed: what the render job is told about the previous round (kept to re-send).
    consensus_in: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    render_enqueued_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    opened_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    deadline: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    last_ranking_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    extensions: Mapped[int] = mapped_column(Integer, default=0)
    # Rankings stored so far, bumped in the transaction that stores each one.
    n_rankings: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The rankings the round waits for now: an adaptive quorum's, raised one at a time while
    # its decision is unsettled (service.closing); NULL: the campaign's annotators_per_round.
    quorum: Mapped[int | None] = mapped_column(Integer, default=None)
    # Why it closed (rankloop.core.contracts.CloseReason); NULL while open, and for rounds
    # closed before the reason was recorded.
    close_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    # When its last slot was offered to one more annotator (a straggler held it): once a round.
    straggler_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    # An image set's item (service.image_sets): its own prompt and the id it was imported under.
    prompt: Mapped[str | None] = mapped_column(Text, default=None)
    item_id: Mapped[str | None] = mapped_column(String(200), default=None)

    campaign: Mapped[Campaign] = relationship(back_populates="rounds")
    images: Mapped[list[Image]] = relationship(back_populates="round", order_by="Image.position")
    consensus: Mapped[Consensus | None] = relationship(back_populates="round")


class Image(Base):
    """One image shown in a round: a candidate (optimizer index) or the attention check."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("round_id", "position", name="uq_image_position"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_short_id)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    # The image's item number in the consensus (0..n-1 over all images of the round).
    position: Mapped[int] = mapped_column(Integer)
    # The worker's index: for a candidate, the optimizer's index into the proposal.
    index: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16), default=ImageRole.CANDIDATE)
    key: Mapped[str] = mapped_column(String(300))
    thumb_key: Mapped[str | None] = mapped_column(String(300), default=None)
    # The model that made an image-set image, as imported (None: the campaign's generator).
    model: Mapped[str | None] = mapped_column(String(300), default=None)

    round: Mapped[Round] = relationship(back_populates="images")


class Study(Base):
    """Many campaigns, one per prompt, under shared settings and one recruitment link
    (:mod:`service.studies`). The study's own settings: :mod:`rankloop.core.study_settings`."""

    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT, index=True)
    # The campaign settings its prompts share, as each campaign stores them (the first row's).
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    recruit: Mapped[bool] = mapped_column(Boolean, default=False)
    recruit_cap: Mapped[int] = mapped_column(Integer)
    tasks_per_worker: Mapped[int] = mapped_column(Integer)
    completion_code: Mapped[str] = mapped_column(String(32))
    completion_url: Mapped[str | None] = mapped_column(Text, default=None)
    pay_per_hour: Mapped[float | None] = mapped_column(Float, default=None)
    owner_key_id: Mapped[int | None] = mapped_column(ForeignKey("owner_keys.id"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)


class Annotator(Base):
    __tablename__ = "annotators"
    __table_args__ = (
        UniqueConstraint("campaign_id", "participant_id", name="uq_annotator_participant"),
        UniqueConstraint("study_id", "participant_id", name="uq_annotator_study_participant"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_short_id)
    # NULL: a pool annotator who may work on every running campaign.
    campaign_id: Mapped[str | None] = mapped_column(
        ForeignKey("campaigns.id"), index=True, default=None
    )
    participant_id: Mapped[str | None] = mapped_column(String(128), default=None)
    # What the crowd platform said about the visit that joined (Prolific STUDY_ID, SESSION_ID;
    # MTurk assignmentId, hitId): to match payments and returns with what was ranked.
    participant_context: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    weight: Mapped[float | None] = mapped_column(Float, default=None)
    tasks_done: Mapped[int] = mapped_column(Integer, default=0)
    attention_failed: Mapped[int] = mapped_column(Integer, default=0)
    completion_code: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    # Revoked by the owner: the token no longer resolves (its hash is replaced), and what the
    # annotator gave stays, marked; ``excluded`` also keeps it out of every later consensus.
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    # The hash the revoked token had: that token is then told it was revoked (401
    # ``token_revoked``), not that nobody holds it. Null: never revoked.
    revoked_token_hash: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # A study's worker (``campaign_id`` NULL): ranks in the study's campaigns only, up to the
    # study's ``tasks_per_worker``, and gets the study's completion code.
    study_id: Mapped[str | None] = mapped_column(ForeignKey("studies.id"), index=True, default=None)


class Assignment(Base):
    """An annotator's task (``task_id`` in the API): one annotator may rank one round; its
    lease runs until ``expires_at``."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("round_id", "annotator_id", name="uq_assignment_once"),
        Index("ix_assignment_round_status", "round_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_short_id)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"))
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.LEASED)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    # When the page said its images were on screen (the lease was then extended by their
    # loading time, once); NULL until then, and again when a lapsed lease is renewed.
    shown_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)


class Ranking(Base):
    """One submission, immutable: ``order`` holds image ids best first (lists are ties)."""

    __tablename__ = "rankings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[str] = mapped_column(ForeignKey("assignments.id"), unique=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    order: Mapped[list[Any]] = mapped_column(JSON)
    positions: Mapped[list[Any]] = mapped_column(JSON)
    attention_passed: Mapped[bool | None] = mapped_column(Boolean, default=None)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Consensus(Base):
    __tablename__ = "consensus"

    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), primary_key=True)
    method: Mapped[str] = mapped_column(String(32))
    order: Mapped[list[Any]] = mapped_column(JSON)  # image positions, best first
    scores: Mapped[list[Any]] = mapped_column(JSON)
    weights: Mapped[dict[str, Any]] = mapped_column(JSON)
    agreement: Mapped[float | None] = mapped_column(Float, default=None)
    pairwise: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    n_rankings: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    round: Mapped[Round] = relationship(back_populates="consensus")


class OwnerKey(Base):
    __tablename__ = "owner_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    campaign_id: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    round_number: Mapped[int | None] = mapped_column(Integer, default=None)
    kind: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str | None] = mapped_column(String(64), default=None)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
