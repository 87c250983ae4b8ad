"""``num_example_per_prompt`` of the pairs tables, as Pick-a-Pic v2 has it: the number of rows
of the table whose caption is that prompt, over everything the export holds (two campaigns of
one prompt, a study's campaigns, an image set's items).

Counted before the first row is written (a row carries it), without building the pairs: every
two ranked candidates make one pair, and a ranked candidate one with each unranked one
(:mod:`service.datasets.pairs`), so a ranking of ``r`` of ``c`` candidates gives
``r(r-1)/2 + r(c-r)``. Without top-k every ranking gives ``c(c-1)/2`` (one image may be left
unranked, and it counts as last), so a round's rankings are counted in SQL; with top-k each
ranking's positions are read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select

from rankloop.core.contracts import ImageRole
from service.datasets.pairs import groups
from service.datasets.source import CampaignSource, RoundInfo
from service.models import Ranking, Round


def pair_count(positions: Sequence[Any], candidates: set[int]) -> int:
    """The pairs one order (positions best first, a list a tied group) gives."""
    ranked = sum(1 for group in groups(positions) for p in group if p in candidates)
    return ranked * (ranked - 1) // 2 + ranked * (len(candidates) - ranked)


def _candidates(round_: RoundInfo) -> set[int]:
    return {i.position for i in round_.images if i.role == ImageRole.CANDIDATE}


def prompt_counts(sources: Iterable[CampaignSource], table: str) -> Counter[str]:
    """Rows per prompt of ``table`` (``pairs`` or ``consensus_pairs``) over ``sources``."""
    counts: Counter[str] = Counter()
    for source in sources:
        if table == "consensus_pairs":
            for round_ in source.rounds():
                if round_.consensus is not None:
                    order = round_.consensus.order
                    counts[source.prompt_of(round_)] += pair_count(order, _candidates(round_))
        elif source.campaign.config.k is None:
            for round_id, n in _rankings_per_round(source):
                round_ = source.round(round_id)
                c = len(_candidates(round_))
                counts[source.prompt_of(round_)] += n * (c * (c - 1) // 2)
        else:
            for batch in source.ranking_batches():
                candidates = _candidates(batch.round)
                counts[source.prompt_of(batch.round)] += sum(
                    pair_count(p, candidates) for p in batch.positions
                )
    return counts


def _rankings_per_round(source: CampaignSource) -> list[tuple[int, int]]:
    with source.sessions() as session:
        rows = session.execute(
            select(Ranking.round_id, func.count())
            .join(Round, Round.id == Ranking.round_id)
            .where(Round.campaign_id == source.campaign.id)
            .group_by(Ranking.round_id)
            .order_by(Ranking.round_id)
        ).all()
    return [(int(r), int(n)) for r, n in rows]
