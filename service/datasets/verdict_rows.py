"""The ``verdict`` table: one row per campaign, the crowd's verdict on what it delivered
(:mod:`service.verdicts`: the share of answers preferring the delivered image to the start,
with its 95 % Wilson interval), and the two images compared."""

from __future__ import annotations

from collections.abc import Iterator

from rankloop.core.contracts import VERDICT_ROUND, ImageRole
from service.datasets.rows import Batch, Images
from service.datasets.source import CampaignSource
from service.verdicts import campaign_verdict


def verdict_rows(source: CampaignSource, images: Images) -> Iterator[Batch]:
    with source.sessions() as session:
        verdict = campaign_verdict(session, source.campaign.id)
    asked = [r for r in source.rounds() if r.kind == VERDICT_ROUND]
    keys = {i.role: i.key for i in asked[-1].images} if asked else {}

    def ref(role: str) -> str | None:
        key = keys.get(role)
        return None if key is None else images.ref(key)

    row = {
        "campaign_id": source.campaign.id,
        "prompt": source.campaign.prompt,
        **verdict.to_dict(),
        "summary": verdict.sentence(),
        "verdict_rounds": [r.number for r in asked],
        "start_image_ref": ref(ImageRole.START),
        "delivered_image_ref": ref(ImageRole.DELIVERED),
    }
    yield Batch({k: [v] for k, v in row.items()}, 1, 1)


__all__ = ["verdict_rows"]
