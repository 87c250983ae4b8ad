"""A round's render message, built from its campaign and its row: what a render worker is told
(the first send, and every re-send after a loss).
"""

from __future__ import annotations

from typing import Final

from rankloop.core.contracts import ConsensusFeed, RenderMessage, RenderSettings, parse
from service.models import Campaign, Round

# The stored settings JSON's key of the image salt (RenderSettings.image_salt and
# CampaignSettings.image_salt; tests/test_campaign_settings.py checks): the salt is written into
# that JSON, and kept out of the JSON an export shows, which keeps keys the model does not know.
IMAGE_SALT: Final = "image_salt"


def render_settings(campaign: Campaign) -> RenderSettings:
    """The campaign settings a render worker gets (the rest stays with the coordinator), from
    the typed settings (``campaign.config``: an older row's missing keys have their defaults).
    A render value the stored row holds beyond a bound (kept by ``CampaignSettings.from_stored``)
    is refused here, naming the field, as the worker would refuse it."""
    data = campaign.config.model_dump(include=set(RenderSettings.model_fields))
    data["prompt"] = campaign.prompt
    return parse(RenderSettings, data, "campaign settings")


def render_message(campaign: Campaign, round_: Round) -> RenderMessage:
    """The message that renders ``round_`` (again, after a loss: it is built from the row)."""
    return RenderMessage(
        campaign_id=campaign.id,
        round_number=round_.number,
        settings=render_settings(campaign),
        previous_state_key=round_.previous_state_key,
        consensus=None
        if round_.consensus_in is None
        else ConsensusFeed.model_validate(round_.consensus_in),
    )


__all__ = ["IMAGE_SALT", "render_message", "render_settings"]
