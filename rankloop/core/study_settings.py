"""A study's own settings, each default and bound written once.

A study is many campaigns (one per prompt) under shared campaign settings
(:class:`rankloop.core.campaign_settings.CampaignFields`) and one recruitment link: what is the
study's alone (its link, its cap, its quota of tasks per worker, its completion code and URL,
its pay rate) is here. A study's campaigns keep their own per-worker cap
(``tasks_per_annotator``): how many rounds of one prompt a study worker ranks at most, which
spreads each worker over many prompts.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field

from rankloop.core.campaign_settings import (
    MAX_RECRUIT_CAP,
    MAX_TASKS_PER_ANNOTATOR,
    CompletionCode,
    CompletionUrl,
)
from rankloop.core.optimizer_schema import Integer

MAX_STUDY_PROMPTS: Final = 10_000  # campaigns one study creates
MAX_PAY_PER_HOUR: Final = 10_000.0


class StudyFields(BaseModel):
    """What a study's owner sets beside the campaign settings its prompts share."""

    recruit: bool = Field(default=False, description="open the study's /join/study link")
    recruit_cap: Integer = Field(
        default=100, ge=0, le=MAX_RECRUIT_CAP, description="participants the study link admits"
    )
    tasks_per_worker: Integer = Field(
        default=20,
        ge=1,
        le=MAX_TASKS_PER_ANNOTATOR,
        description="rankings a recruited worker gives, over the study's prompts, before the "
        "completion code",
    )
    completion_code: CompletionCode | None = Field(
        default=None,
        description="the study's one completion code; null: the cc of completion_url, else a "
        "random one",
    )
    completion_url: CompletionUrl | None = Field(
        default=None, description="where a finished worker is sent (e.g. Prolific's)"
    )
    pay_per_hour: float | None = Field(
        default=None, ge=0, le=MAX_PAY_PER_HOUR, description="what a worker is paid per hour"
    )


__all__ = ["MAX_PAY_PER_HOUR", "MAX_STUDY_PROMPTS", "StudyFields"]
