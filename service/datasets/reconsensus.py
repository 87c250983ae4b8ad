"""The consensus of every round computed again from the stored rankings, offline.

Rounds are taken in order with one reliability model carried through them, as
:func:`service.closing.close_round` does while the campaign runs, so the campaign's own method
gives back the stored consensus; another method shows what it would have decided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.errors import NotFound
from service.closing import round_consensus
from service.models import Campaign, Consensus, Image, Ranking, Round


@dataclass(frozen=True)
class RoundConsensus:
    round: int
    method: str
    order: list[int]  # positions, best first
    scores: list[float]
    agreement: float | None
    weights: dict[str, float]
    n_rankings: int


def rerun(sessions: Callable[[], Session], campaign_id: str, method: str | None = None,
          save: bool = False) -> list[RoundConsensus]:  # fmt: skip
    """Every round's consensus with ``method`` (default: the campaign's); ``save`` stores it
    (replacing what the database held) for the other exports and the report."""
    with sessions() as session:
        results = recompute(session, campaign_id, method, save)
        if save:
            session.commit()
        return results


def recompute(session: Session, campaign_id: str, method: str | None = None,
              save: bool = False) -> list[RoundConsensus]:  # fmt: skip
    """:func:`rerun` inside the caller's transaction (the import's, so that a campaign is
    imported with its consensus or not at all); ``save`` adds the rows, the caller commits."""
    from rankloop.core.consensus import AnnotatorReliability

    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    method = method or campaign.config.consensus_method
    reliability = AnnotatorReliability()
    results = []
    rounds = session.scalars(
        select(Round).where(Round.campaign_id == campaign_id).order_by(Round.number)
    ).all()
    for round_ in rounds:
        rankings = session.execute(
            select(Ranking.annotator_id, Ranking.positions)
            .where(Ranking.round_id == round_.id)
            .order_by(Ranking.id)
        ).all()
        if not rankings:
            continue
        images = session.scalars(
            select(Image).where(Image.round_id == round_.id).order_by(Image.position)
        ).all()
        row = round_consensus(round_.id, list(rankings), images, method, reliability)
        done = RoundConsensus(
            round_.number, method, row.order, row.scores, row.agreement, row.weights,
            len(rankings),
        )  # fmt: skip
        results.append(done)
        if save:
            _save(session, row)
    if save:
        campaign.reliability = reliability.to_dict()
    return results


def _save(session: Session, row: Consensus) -> None:
    """Store ``row`` in place of the round's consensus."""
    existing = session.get(Consensus, row.round_id)
    if existing is not None:
        session.delete(existing)
        session.flush()
    session.add(row)
