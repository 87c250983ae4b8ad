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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from rankloop.core.contracts import CampaignStatus, RoundStatus, TaskStatus
from rankloop.core.errors import Conflict, InvalidInput
from service.auth import hash_token
from service.models import Annotator, Assignment, Campaign, Image, Ranking, Round

COMMIT_EVERY = 2000


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a rankings export, by its suffix (``.jsonl`` or ``.parquet``)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=COMMIT_EVERY):
            yield from batch.to_pylist()
    elif path.suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)
    else:
        raise InvalidInput(f"{path}: a rankings export ends in .jsonl or .parquet")


def count_rows(path: Path) -> int:
    """How many rows ``read_rows(path)`` will give (for a progress bar)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def import_rankings(sessions: Callable[[], Session], rows: Iterator[dict[str, Any]],
                    progress: Callable[[int], None] | None = None) -> str:  # fmt: skip
    """Store the rankings ``rows`` (a ``rankings`` export, in ranking order); returns the
    campaign's id."""
    session = sessions()
    try:
        campaign_id = None
        rounds: dict[int, Round] = {}
        annotators: set[str] = set()
        for n, row in enumerate(rows, 1):
            if "order" not in row or "image_ids" not in row:
                raise InvalidInput("not a rankings export (format=rankings.jsonl or .parquet)")
            if campaign_id is None:
                campaign_id = _campaign(session, row)
            elif row["campaign_id"] != campaign_id:
                raise InvalidInput("an export holds one campaign; this one holds two")
            round_ = rounds.get(row["round"]) or _round(session, campaign_id, row)
            rounds[row["round"]] = round_
            if row["annotator_id"] not in annotators:
                _annotator(session, campaign_id, row["annotator_id"])
                annotators.add(row["annotator_id"])
            _ranking(session, round_, row)
            if progress is not None:
                progress(1)
            if n % COMMIT_EVERY == 0:
                session.commit()
        if campaign_id is None:
            raise InvalidInput("the export holds no ranking")
        for round_ in rounds.values():
            round_.n_rankings = session.query(Ranking).filter_by(round_id=round_.id).count()
        session.commit()
        return campaign_id
    finally:
        session.close()


def _campaign(session: Session, row: dict[str, Any]) -> str:
    campaign_id = str(row["campaign_id"])
    if session.get(Campaign, campaign_id) is not None:
        raise Conflict(f"campaign {campaign_id} is already in this database")
    session.add(
        Campaign(
            id=campaign_id,
            name=f"imported {campaign_id}",
            prompt=row["prompt"],
            status=CampaignStatus.STOPPED,
            settings=json.loads(row["settings"]),
        )
    )
    session.flush()
    return campaign_id


def _round(session: Session, campaign_id: str, row: dict[str, Any]) -> Round:
    round_ = Round(
        campaign_id=campaign_id, number=int(row["round"]), kind=row["round_kind"],
        status=RoundStatus.CLOSED, state_key=row["state_key"],
        previous_state_key=row["previous_state_key"],
    )  # fmt: skip
    session.add(round_)
    session.flush()
    for position, (image_id, key, role, index) in enumerate(
        zip(
            row["image_ids"],
            row["image_keys"],
            row["image_roles"],
            row["image_indices"],
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


def _ranking(session: Session, round_: Round, row: dict[str, Any]) -> None:
    submitted = _naive(row["submitted_at"])
    leased = _naive(row["leased_at"]) if row.get("leased_at") else submitted
    assignment = Assignment(
        round_id=round_.id, annotator_id=row["annotator_id"], status=TaskStatus.SUBMITTED,
        created_at=leased, expires_at=submitted,
    )  # fmt: skip
    session.add(assignment)
    session.flush()
    session.add(
        Ranking(
            assignment_id=assignment.id, round_id=round_.id, annotator_id=row["annotator_id"],
            order=[g[0] if len(g) == 1 else list(g) for g in row["order"]],
            positions=[g[0] if len(g) == 1 else list(g) for g in row["positions"]],
            attention_passed=row["attention_passed"], late=bool(row["late"]),
            created_at=submitted,
        )
    )  # fmt: skip


def _naive(value: Any) -> dt.datetime:
    """A timestamp as the database keeps it (naive UTC): JSON's ``...Z`` or Parquet's aware."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.removesuffix("Z"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value
