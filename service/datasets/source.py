"""A campaign read from the database in batches, for the exports: constant memory, short
transactions.

Rankings are read round by round by keyset (``round_id = r AND id > last ORDER BY id LIMIT
batch``), each batch in its own session: no read transaction outlives a batch (on SQLite every
transaction takes the write lock, so a long export would stall the annotators), and memory
holds one batch plus a few rounds.
Rankings are immutable and their ids only grow, so the batches never miss or repeat one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, select, type_coerce
from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import CampaignSettings
from rankloop.core.errors import NotFound
from service.models import Assignment, Campaign, Consensus, Image, Ranking, Round

BATCH = 2000
ROUND_CACHE = 16  # rounds kept while streaming; rankings come in round order, so few are needed


@dataclass(frozen=True)
class ImageInfo:
    id: str
    position: int
    index: int
    role: str
    key: str
    model: str | None = None  # an image set's, as imported


@dataclass(frozen=True)
class RoundInfo:
    id: int
    number: int
    kind: str | None
    state_key: str | None
    previous_state_key: str | None
    images: list[ImageInfo]  # by position
    consensus: Consensus | None  # detached; its ``weights`` are the annotators' at closing
    close_reason: str | None = None  # rankloop.core.contracts.CloseReason; None: not recorded
    prompt: str | None = None  # an image set's item's own prompt

    def weight(self, annotator_id: str) -> float | None:
        if self.consensus is None:
            return None
        value = self.consensus.weights.get(annotator_id)
        return None if value is None else float(value)


@dataclass(frozen=True)
class RankingInfo:
    id: int
    round_id: int
    annotator_id: str
    order: list[Any]
    positions: list[Any]
    attention_passed: bool | None
    late: bool
    submitted_at: dt.datetime
    leased_at: dt.datetime | None


@dataclass(frozen=True)
class RankingBatch:
    """Rankings of one round, as columns (the fields of :class:`RankingInfo`, in id order)."""

    round: RoundInfo
    ids: list[int]
    annotator_ids: list[str]
    orders: list[Any]
    positions: list[Any]
    attention_passed: list[bool | None]
    late: list[bool]
    submitted_at: list[dt.datetime]
    leased_at: list[dt.datetime | None]
    flat: bool  # no order or positions holds a group (no ties)


@dataclass(frozen=True)
class Crowd:
    annotators: int  # who gave at least one ranking
    rankings: int
    attention_failed: int
    recruited: int  # of the annotators, those who joined through the recruitment link


@dataclass(frozen=True)
class CampaignInfo:
    id: str
    name: str
    prompt: str
    settings: dict[str, Any]  # as stored (exported as it is, less the image salt)
    created_at: dt.datetime
    config: CampaignSettings  # the same, typed (rankloop.core.campaign_settings)


class CampaignSource:
    """One campaign's rounds, rankings and consensus, read a batch at a time."""

    def __init__(self, sessions: Callable[[], Session], campaign_id: str, batch: int = BATCH):
        self.sessions, self.batch = sessions, batch
        with sessions() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None:
                raise NotFound(f"no campaign {campaign_id!r}")
            self.campaign = CampaignInfo(
                campaign.id, campaign.name, campaign.prompt, dict(campaign.settings),
                campaign.created_at, campaign.config,
            )  # fmt: skip
            self.round_ids = list(
                session.scalars(
                    select(Round.id).where(Round.campaign_id == campaign_id).order_by(Round.number)
                )
            )
        self._rounds: OrderedDict[int, RoundInfo] = OrderedDict()

    def round(self, round_id: int) -> RoundInfo:
        cached = self._rounds.get(round_id)
        if cached is not None:
            self._rounds.move_to_end(round_id)
            return cached
        with self.sessions() as session:
            # Plain rows for the round and its images (the ORM's identity map is not needed).
            connection = session.connection()
            fields = (Round.number, Round.kind, Round.state_key, Round.previous_state_key,
                      Round.close_reason, Round.prompt)  # fmt: skip
            number, kind, state_key, previous_state_key, close_reason, prompt = connection.execute(
                select(*fields).where(Round.id == round_id)
            ).one()
            images = connection.execute(
                select(Image.id, Image.position, Image.index, Image.role, Image.key, Image.model)
                .where(Image.round_id == round_id)
                .order_by(Image.position)
            )
            info = RoundInfo(
                round_id, number, kind, state_key, previous_state_key,
                [ImageInfo(*image) for image in images], session.get(Consensus, round_id),
                close_reason, prompt,
            )  # fmt: skip
            session.expunge_all()
        self._rounds[round_id] = info
        if len(self._rounds) > ROUND_CACHE:
            self._rounds.popitem(last=False)
        return info

    def rounds(self) -> Iterator[RoundInfo]:
        for round_id in self.round_ids:
            yield self.round(round_id)

    def rankings(self) -> Iterator[tuple[RoundInfo, RankingInfo]]:
        """Every ranking of the campaign, round by round, in id order within a round (the order
        consensus reads them in)."""
        for batch in self.ranking_batches():
            round_ = batch.round
            for fields in zip(batch.ids, batch.annotator_ids, batch.orders, batch.positions,
                              batch.attention_passed, batch.late, batch.submitted_at,
                              batch.leased_at, strict=True):  # fmt: skip
                id_, annotator, order, positions, passed, late, at, leased_at = fields
                ranking = RankingInfo(
                    id_, round_.id, annotator, order, positions, passed, late, at, leased_at
                )
                yield round_, ranking

    def ranking_batches(self) -> Iterator[RankingBatch]:
        """The rankings of :meth:`rankings`, a batch (of one round) at a time, as columns. One
        keyset walk per round: the index on ``round_id`` serves it, where a campaign-wide
        ``ORDER BY id`` would sort every ranking at every batch."""
        # JSON and timestamps come as the driver gives them and are decoded below: SQLAlchemy's
        # own processors (a regex per SQLite timestamp) took most of the time per row.
        raw = (
            type_coerce(c, String)
            for c in (Ranking.order, Ranking.positions, Ranking.created_at, Assignment.created_at)
        )
        order, positions, submitted, leased = raw
        columns = (
            Ranking.id, Ranking.annotator_id, order, positions,
            Ranking.attention_passed, Ranking.late, submitted, leased,
        )  # fmt: skip
        for round_id in self.round_ids:
            yield from self._round_batches(round_id, columns)

    def _round_batches(self, round_id: int, columns) -> Iterator[RankingBatch]:
        last = 0
        while True:
            with self.sessions() as session:
                # Core, not the ORM's row loading: a third of the time per row.
                rows = (
                    session.connection()
                    .execute(
                        select(*columns)
                        .outerjoin(Assignment, Assignment.id == Ranking.assignment_id)
                        .where(Ranking.round_id == round_id, Ranking.id > last)
                        .order_by(Ranking.id)
                        .limit(self.batch)
                    )
                    .all()
                )
            if not rows:
                return
            ids, annotators, orders, positions, passed, late, at, leased = zip(*rows, strict=True)
            orders_, flat_orders = _json_all(orders)
            positions_, flat_positions = _json_all(positions)
            yield RankingBatch(
                self.round(round_id), list(ids), list(annotators), orders_, positions_,
                [None if p is None else bool(p) for p in passed], [bool(x) for x in late],
                [_time(t) for t in at], [None if t is None else _time(t) for t in leased],
                flat_orders and flat_positions,
            )  # fmt: skip
            if len(rows) < self.batch:
                return
            last = rows[-1][0]

    def round_answers(self, round_id: int) -> list[tuple[str, Any]]:
        """``(annotator_id, positions)`` of each ranking of the round, in id order (a round's
        rankings are a quorum's worth: read at once, for its agreement)."""
        with self.sessions() as session:
            rows = session.execute(
                select(Ranking.annotator_id, Ranking.positions)
                .where(Ranking.round_id == round_id)
                .order_by(Ranking.id)
            ).all()
        return [(annotator, positions) for annotator, positions in rows]

    def prompt_of(self, round_: RoundInfo) -> str:
        """The prompt a round's images answer (what a dataset splits on)."""
        return round_.prompt or self.campaign.prompt

    def crowd(self) -> Crowd:
        """Who ranked: annotators, rankings, failed attention checks, recruited participants."""
        from sqlalchemy import func

        from service.models import Annotator

        with self.sessions() as session:
            in_campaign = (
                select(Ranking.annotator_id, Ranking.attention_passed)
                .join(Round, Round.id == Ranking.round_id)
                .where(Round.campaign_id == self.campaign.id)
                .subquery()
            )
            annotators, rankings, failures = session.execute(
                select(
                    func.count(func.distinct(in_campaign.c.annotator_id)),
                    func.count(),
                    func.sum(func.cast(in_campaign.c.attention_passed.is_(False), Integer)),
                )
            ).one()
            recruited = session.scalar(
                select(func.count(Annotator.id)).where(
                    Annotator.id.in_(select(in_campaign.c.annotator_id)),
                    Annotator.participant_id.is_not(None),
                )
            )
        return Crowd(int(annotators), int(rankings), int(failures or 0), int(recruited or 0))

    def count_rankings(self) -> int:
        from sqlalchemy import func

        with self.sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Ranking)
                    .join(Round, Round.id == Ranking.round_id)
                    .where(Round.campaign_id == self.campaign.id)
                )
                or 0
            )


def _json_all(values: tuple[Any, ...]) -> tuple[list[Any], bool]:
    """Lists stored as JSON, decoded, and whether none holds a list. SQLite gives text, parsed
    in one call for the batch (a call per value cost more than the parsing); PostgreSQL's
    driver has decoded them already."""
    if all(type(v) is str for v in values):
        text = ",".join(values)
        # Each value opens one "[": any more is a nested list (or, harmlessly, a "[" in a name).
        return json.loads("[" + text + "]"), text.count("[") == len(values)
    decoded = [json.loads(v) if isinstance(v, str | bytes) else v for v in values]
    return decoded, not any(type(e) is list for v in decoded for e in v)


def _time(value: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value
