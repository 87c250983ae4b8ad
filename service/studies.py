"""Studies: many campaigns, one per prompt, under shared settings and one recruitment link.

A study is made in one step from a prompt list (:mod:`service.prompt_lists`): every row is
checked as the campaign it becomes (:class:`service.schemas.CampaignCreate`: the shared
settings, the row's prompt and its overrides) before anything is stored, so a bad row (its line
named) creates nothing. Its campaigns are campaigns like any other (their rounds, renders and
consensus are the campaign's own); what the study adds is its one link (``/join/study``), the
routing of its workers over its campaigns (:mod:`service.leasing`, the study scope), its quota
per worker and its one completion code, which its campaigns share. Start, pause and stop act on
every campaign of the study (:mod:`service.lifecycle`, campaign by campaign).
"""

from __future__ import annotations

import secrets
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import CampaignSettings
from rankloop.core.contracts import (
    CAMPAIGN_ENDED,
    CampaignStatus,
    Text,
)
from rankloop.core.errors import Conflict, NotFound
from rankloop.core.study_settings import StudyFields
from service import lifecycle
from service.models import Campaign, Study, utcnow
from service.prompt_lists import BadPromptList, PromptRow
from service.rendering import Outcome
from service.schemas import CampaignCreate, UnprocessableInput
from service.transitions import audit

# Study-wide: set once for the study, not among the campaign settings its prompts share.
NOT_SHARED: Final = (
    "name",
    "prompt",
    "start",
    "recruit",
    "recruit_cap",
    "completion_code",
    "completion_url",
)


class StudyCreate(StudyFields):
    """``POST /api/studies``: the study's own settings, the campaign settings its prompts share,
    and the prompts (a JSON body; an upload sends this as the form field ``study``)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: Text = Field(default="", max_length=200)
    prompts: list[str | dict[str, Any]] | str | None = Field(
        default=None,
        description="the prompts: a list (a prompt, or an object with prompt and optionally "
        "negative_prompt and seed), or one string of lines; or upload a file instead",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="the campaign settings every prompt's campaign shares (those of POST "
        "/api/campaigns but name, prompt, start, recruit, recruit_cap and the completion code "
        "and URL, which are the study's)",
    )
    start: bool = False


class StudyDuplicate(BaseModel):
    """``POST /api/studies/<id>/duplicate``: what the copy changes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Text | None = Field(default=None, max_length=200, description="null: the source's")


def create(
    session: Session, body: StudyCreate, rows: list[PromptRow], owner_key_id: int | None, actor: str
) -> Study:
    """Check every row as the campaign it becomes, then store the study and its campaigns in
    one commit (nothing when any row is refused)."""
    shared = dict(body.settings)
    refused = sorted(set(shared) & set(NOT_SHARED))
    if refused:
        raise UnprocessableInput(
            f"settings.{refused[0]}: set on the study, not in its shared campaign settings",
            details=[{"field": f"settings.{refused[0]}", "message": "a study's own setting"}],
        )
    base = {
        **shared,
        "recruit": False,  # the study's link is the way in; its campaigns' own links stay shut
        "completion_code": body.completion_code,
        "completion_url": body.completion_url,
    }
    checked = [_campaign_body(base, rows[0], first=True)]
    checked += [_campaign_body(base, row) for row in rows[1:]]
    code = checked[0].completion_code or secrets.token_hex(4).upper()
    study = Study(
        name=body.name,
        status=CampaignStatus.DRAFT,
        settings=shared,  # as the owner gave them: what a duplicate starts from
        recruit=body.recruit,
        recruit_cap=body.recruit_cap,
        tasks_per_worker=body.tasks_per_worker,
        completion_code=code,
        completion_url=body.completion_url,
        pay_per_hour=body.pay_per_hour,
        owner_key_id=owner_key_id,
    )
    session.add(study)
    session.flush()
    session.add_all(
        Campaign(
            name=f"{body.name or 'study'} #{n + 1}"[:200],
            prompt=campaign.prompt,
            settings=campaign.settings(),
            owner_key_id=owner_key_id,
            completion_code=code,
            study_id=study.id,
            study_position=n,
        )
        for n, campaign in enumerate(checked)
    )
    audit(session, "study_created", actor=actor, study_id=study.id, prompts=len(rows))
    session.commit()
    return study


def _campaign_body(base: dict[str, Any], row: PromptRow, first: bool = False) -> CampaignCreate:
    """The row as a campaign's create request; a refusal names the row's line (and, for the
    first row, reads as the shared settings' own: their error is every row's)."""
    try:
        return CampaignCreate.model_validate({**base, **row.overrides, "prompt": row.prompt})
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        where = ".".join(str(p) for p in problems[0]["loc"]) or "settings"
        field = where if where in ("prompt", *row.overrides) else f"settings.{where}"
        message = f"{field}: {problems[0]['msg']}"
        if first and field.startswith("settings."):
            raise UnprocessableInput(
                message, details=[{"field": field, "message": problems[0]["msg"]}]
            ) from None
        raise BadPromptList(message, row.line) from None


def duplicate(
    session: Session, study_id: str, name: str | None, owner_key_id: int | None, actor: str
) -> Study:
    """A new draft study with the same prompts (each with its own overrides), shared settings,
    link settings and pay, and a completion code of its own (a new crowd-platform study has its
    own): the source's completion URL carries over only when it names no code."""
    source = session.get(Study, study_id)
    if source is None:
        raise NotFound(f"no study {study_id!r}")
    shared = CampaignSettings.from_stored(source.settings)
    rows = [
        PromptRow(
            n + 1,
            campaign.prompt,
            {
                key: getattr(campaign.config, key)
                for key in ("negative_prompt", "seed")
                if getattr(campaign.config, key) != getattr(shared, key)
            },
        )
        for n, campaign in enumerate(campaigns_of(session, study_id))
    ]
    url = source.completion_url
    body = StudyCreate(
        name=source.name if name is None else name,
        settings=source.settings,
        recruit=source.recruit,
        recruit_cap=source.recruit_cap,
        tasks_per_worker=source.tasks_per_worker,
        completion_url=url if url and "cc" not in parse_qs(urlsplit(url).query) else None,
        pay_per_hour=source.pay_per_hour,
    )
    study = create(session, body, rows, owner_key_id, actor)
    audit(session, "study_duplicated", actor=actor, study_id=study.id, source=study_id)
    session.commit()
    return study


def campaigns_of(session: Session, study_id: str) -> list[Campaign]:
    return list(
        session.scalars(
            select(Campaign)
            .where(Campaign.study_id == study_id)
            .order_by(Campaign.study_position, Campaign.id)
        ).all()
    )


# -- start, pause, stop ----------------------------------------------------------------------------

# action -> (the study statuses it moves from, the status it moves to)
MOVES: Final = {
    "start": ((CampaignStatus.DRAFT, CampaignStatus.PAUSED), CampaignStatus.RUNNING),
    "pause": ((CampaignStatus.RUNNING,), CampaignStatus.PAUSED),
    "stop": (
        (CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED),
        CampaignStatus.STOPPED,
    ),
}
CONTROLS: Final = tuple(MOVES)


def control(session: Session, study_id: str, action: str, actor: str | None = None) -> Outcome:
    """Move the study, then each of its campaigns that can make the move (a campaign that
    finished, failed or was stopped on its own keeps its status); the renders of the first
    rounds of campaigns started. Each campaign's move is its own step (it commits)."""
    study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
    if study is None:
        raise NotFound(f"no study {study_id!r}")
    allowed, status = MOVES[action]
    if study.status not in allowed:
        raise Conflict(f"study is {study.status}: cannot {action} it from there")
    study.status = status
    if status == CampaignStatus.STOPPED:
        study.finished_at = utcnow()
    audit(session, f"study_{status}", actor=actor, study_id=study.id)
    session.commit()  # the study first: its link and its workers' routing follow it
    outcome = Outcome()
    for campaign in campaigns_of(session, study_id):
        step = _campaign_step(action, campaign.status)
        if step is None:
            continue
        try:
            outcome.renders.extend(step(session, campaign.id, actor).renders)
        except Conflict:
            session.rollback()  # moved meanwhile (its own control): leave it as it is
    return outcome


def _campaign_step(action: str, status: str) -> Any:
    if action == "start":
        return {
            CampaignStatus.DRAFT: lifecycle.start,
            CampaignStatus.PAUSED: lifecycle.resume,
        }.get(CampaignStatus(status))
    if action == "pause":
        return lifecycle.pause if status == CampaignStatus.RUNNING else None
    return None if status in CAMPAIGN_ENDED else lifecycle.stop


__all__ = [
    "CONTROLS",
    "MOVES",
    "NOT_SHARED",
    "StudyCreate",
    "StudyDuplicate",
    "campaigns_of",
    "control",
    "create",
    "duplicate",
]
