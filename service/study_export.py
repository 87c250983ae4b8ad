"""A study's export: its campaigns' tables as one dataset, campaign by campaign in the prompt
list's order. Every row of every table (the ``verdict`` table's too: one row per campaign)
already names its campaign and prompt (:mod:`service.datasets.rows`), so the campaigns' rows
are chained into one stream (:func:`service.datasets.export`; pairs count their prompt's rows
over the study), and into one Parquet file (not files concatenated) when Parquet is asked
for."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from sqlalchemy.orm import Session

from rankloop.core.errors import NotFound
from service import datasets
from service.datasets.card import StudyInfo
from service.datasets.rows import Images
from service.datasets.source import CampaignSource


def study_table(
    sessions: Callable[[], Session],
    campaign_ids: list[str],
    table: str,
    fmt: str,
    images: Images,
) -> Iterator[bytes]:
    """The bytes of ``table`` of every campaign in ``campaign_ids``, in ``fmt`` (checked before
    the first byte: a stream cannot turn into an error response later)."""
    sources = [CampaignSource(sessions, campaign_id) for campaign_id in campaign_ids]
    return datasets.export(sources, table, fmt, images)


def export_sources(
    sessions: Callable[[], Session], ids: Sequence[str]
) -> tuple[list[CampaignSource], list[StudyInfo]]:
    """The campaigns named by ``ids``, each a campaign's or a study's (all its campaigns, in the
    prompt list's order), and the studies among them. A campaign named twice is exported once."""
    from service.models import Campaign, Study
    from service.studies import campaigns_of

    campaign_ids: list[str] = []
    studies: list[StudyInfo] = []
    with sessions() as session:
        for id_ in ids:
            if session.get(Campaign, id_) is not None:
                campaign_ids.append(id_)
                continue
            study = session.get(Study, id_)
            if study is None:
                raise NotFound(f"no campaign or study {id_!r}")
            members = [c.id for c in campaigns_of(session, id_)]
            studies.append(StudyInfo(study.id, study.name, len(members)))
            campaign_ids += members
    unique = list(dict.fromkeys(campaign_ids))
    return [CampaignSource(sessions, c) for c in unique], studies


__all__ = ["StudyInfo", "export_sources", "study_table"]
