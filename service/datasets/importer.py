"""A rankings export (JSON lines or Parquet) back into a database: the campaign, its rounds and
images, its annotators (as pseudonyms, with tokens nobody holds) and every ranking, in the order
they were submitted. The campaign keeps its id (its image keys name it) and is imported
``stopped``: it is data to study, not a campaign to run. Consensus is not imported; it is
computed again (:mod:`service.datasets.reconsensus`), with the campaign's method or another.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import update
from sqlalchemy.orm import Session

from rankloop.core.contracts import CampaignStatus, RoundStatus, TaskStatus
from rankloop.core.errors import Conflict, InvalidInput
from service.auth import hash_token
from service.models import Annotator, Assignment, Campaign, Image, Ranking, Round

T = TypeVar("T")
FLUSH_EVERY = 2000  # rows written and let go of at a time: flat memory, one transaction


class ExportedRanking(BaseModel):
    """The columns of a rankings export that an import reads (others are ignored), checked
    before anything is written: a malformed row is named, never half-imported."""

    model_config = ConfigDict(extra="ignore")

    campaign_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    prompt: str
    settings: dict[str, Any]
    round: int = Field(ge=0)
    round_kind: str
    state_key: str | None = None
    previous_state_key: str | None = None
    image_ids: list[str] = Field(min_length=1)
    image_keys: list[str]
    image_roles: list[str]
    image_indices: list[int]
    annotator_id: str = Field(min_length=1)
    order: list[list[str]] = Field(min_length=1)  # image ids, best first; a list = a tie
    positions: list[list[int]]  # the same order as indices into image_ids
    attention_passed: bool | None = None
    late: bool = False
    submitted_at: dt.datetime
    leased_at: dt.datetime | None = None

    @field_validator("settings", mode="before")
    @classmethod
    def _settings_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("order", "positions", mode="before")
    @classmethod
    def _groups(cls, value: Any) -> Any:  # a position holds one item or a list of tied ones
        if isinstance(value, list):
            return [g if isinstance(g, list) else [g] for g in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExportedRanking:
        n = len(self.image_ids)
        if not len(self.image_keys) == len(self.image_roles) == len(self.image_indices) == n:
            raise ValueError(
                "image_ids, image_keys, image_roles and image_indices differ in length"
            )
        ids = [item for group in self.order for item in group]
        if not set(ids) <= set(self.image_ids) or len(set(ids)) != len(ids):
            raise ValueError("order must name distinct images of image_ids")
        indices = [item for group in self.positions for item in group]
        if any(not 0 <= item < n for item in indices) or len(set(indices)) != len(indices):
            raise ValueError(f"positions must name distinct images 0..{n - 1}")
        return self


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a rankings export, by its suffix (``.jsonl`` or ``.parquet``)."""
    if path.suffix == ".parquet":
        for batch in _parquet(path).iter_batches(batch_size=FLUSH_EVERY):
            yield from batch.to_pylist()
    elif path.suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InvalidInput(f"{path}, line {number}: not JSON ({exc.msg})") from None
    else:
        raise InvalidInput(f"{path}: a rankings export ends in .jsonl or .parquet")


def _parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{path}: not a Parquet file ({exc})") from None


def count_rows(path: Path) -> int:
    """How many rows ``read_rows(path)`` will give (for a progress bar)."""
    if path.suffix == ".parquet":
        return int(_parquet(path).metadata.num_rows)
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def parse_row(number: int, row: Any) -> ExportedRanking:
    """Row ``number`` (1-based) as an :class:`ExportedRanking`, or :class:`InvalidInput` naming
    the row and its first problem."""
    if not isinstance(row, dict) or "order" not in row or "image_ids" not in row:
        raise InvalidInput(
            f"row {number}: not a rankings export (format=rankings.jsonl or .parquet)"
        )
    try:
        return ExportedRanking.model_validate(row)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        problem = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"row {number}: {where + ': ' if where else ''}{problem}") from None


def import_rankings(
    sessions: Callable[[], Session],
    rows: Iterator[dict[str, Any]],
    progress: Callable[[int], None] | None = None,
    then: Callable[[Session, str], T] | None = None,
) -> tuple[str, T | None]:
    """Store the rankings ``rows`` (a ``rankings`` export, in ranking order) in one transaction
    (all or nothing); ``then(session, campaign_id)`` runs inside it before the commit (the
    consensus computed again: it fails, nothing is imported). Returns the campaign's id and
    what ``then`` returned."""
    session = sessions()
    try:
        campaign_id = None
        rounds: dict[int, Round] = {}
        counts: Counter[int] = Counter()
        annotators: set[str] = set()
        for n, raw in enumerate(rows, 1):
            row = parse_row(n, raw)
            if campaign_id is None:
                campaign_id = _campaign(session, row)
            elif row.campaign_id != campaign_id:
                raise InvalidInput(f"row {n}: an export holds one campaign; this one holds two")
            round_ = rounds.get(row.round) or _round(session, campaign_id, row)
            rounds[row.round] = round_
            if row.annotator_id not in annotators:
                _annotator(session, campaign_id, row.annotator_id)
                annotators.add(row.annotator_id)
            _ranking(session, round_, row)
            counts[round_.id] += 1
            if progress is not None:
                progress(1)
            if n % FLUSH_EVERY == 0:
                session.flush()
                session.expunge_all()  # the rows are in the transaction; let go of the objects
        if campaign_id is None:
            raise InvalidInput("the export holds no ranking")
        for round_id, count in counts.items():
            session.execute(update(Round).where(Round.id == round_id).values(n_rankings=count))
        after = then(session, campaign_id) if then is not None else None
        session.commit()
        return campaign_id, after
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _campaign(session: Session, row: ExportedRanking) -> str:
    campaign_id = row.campaign_id
    if session.get(Campaign, campaign_id) is not None:
        raise Conflict(f"campaign {campaign_id} is already in this database")
    session.add(
        Campaign(
            id=campaign_id,
            name=f"imported {campaign_id}",
            prompt=row.prompt,
            status=CampaignStatus.STOPPED,
            settings=row.settings,
        )
    )
    session.flush()
    return campaign_id


def _round(session: Session, campaign_id: str, row: ExportedRanking) -> Round:
    round_ = Round(
        campaign_id=campaign_id, number=row.round, kind=row.round_kind,
        status=RoundStatus.CLOSED, state_key=row.state_key,
        previous_state_key=row.previous_state_key,
    )  # fmt: skip
    session.add(round_)
    session.flush()
    for position, (image_id, key, role, index) in enumerate(
        zip(
            row.image_ids,
            row.image_keys,
            row.image_roles,
            row.image_indices,
            strict=True,
        )
    ):
        session.add(
            Image(
                id=image_id,
                round_id=round_.id,
                position=position,
                index=int(index),
                role=role,
                key=key,
            )
        )
    session.flush()
    return round_


def _annotator(session: Session, campaign_id: str, annotator_id: str) -> None:
    if session.get(Annotator, annotator_id) is None:
        # A token nobody holds: imported annotators can never sign in.
        session.add(
            Annotator(
                id=annotator_id,
                campaign_id=campaign_id,
                token_hash=hash_token(secrets.token_urlsafe(32)),
            )
        )
        session.flush()


def _ranking(session: Session, round_: Round, row: ExportedRanking) -> None:
    submitted = _naive(row.submitted_at)
    leased = _naive(row.leased_at) if row.leased_at else submitted
    assignment = Assignment(
        round_id=round_.id, annotator_id=row.annotator_id, status=TaskStatus.SUBMITTED,
        created_at=leased, expires_at=submitted,
    )  # fmt: skip
    session.add(assignment)
    session.flush()
    session.add(
        Ranking(
            assignment_id=assignment.id, round_id=round_.id, annotator_id=row.annotator_id,
            order=[g[0] if len(g) == 1 else list(g) for g in row.order],
            positions=[g[0] if len(g) == 1 else list(g) for g in row.positions],
            attention_passed=row.attention_passed, late=row.late,
            created_at=submitted,
        )
    )  # fmt: skip


def _naive(value: dt.datetime) -> dt.datetime:
    """A timestamp as the database keeps it (naive UTC): JSON's ``...Z`` or Parquet's aware."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value
