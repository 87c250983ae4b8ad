"""How a ranking credits its annotator, and when the completion code is theirs: written once as
SQLAlchemy Core for every path that stores a ranking (:mod:`service.submission`,
:mod:`service.fast_submission`), and read by the views that show an annotator's code.

The attention policy (:func:`~rankloop.core.campaign_settings.over_attention_limit`) withholds
the code from an annotator who failed too many attention checks; a code issued stays theirs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, String, Update, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import (
    CampaignSettings,
    attention_limit,
    over_attention_limit,
)
from rankloop.core.contracts import CAMPAIGN_CONCLUDED
from service.driver import ANNOTATORS, STUDIES
from service.statements import now_param


def over_attention_limit_sql(failed: Any, done: Any) -> ColumnElement[bool]:
    """:func:`~rankloop.core.campaign_settings.over_attention_limit` inside a statement, the
    policy's numbers (:func:`~rankloop.core.campaign_settings.attention_limit`) as the
    parameters ``most`` and ``share``."""
    most = bindparam("most", type_=Integer)
    share = bindparam("share", type_=Integer)
    return (failed > most) & (2 * failed > done * share)


def credit_annotator(*where: Any) -> Update:
    """Credit the annotator with a ranking (parameters from :func:`credit`)."""
    failed = ANNOTATORS.c.attention_failed + bindparam("failed", type_=Integer)
    done = ANNOTATORS.c.tasks_done + 1
    return (
        update(ANNOTATORS)
        .where(*where)
        .values(
            tasks_done=done,
            last_seen=now_param(),
            attention_failed=failed,
            # The quota met with this ranking: the crowd platform's completion code, once, unless
            # the campaign's attention policy withholds it (too many attention checks failed).
            # A study's worker has the study's quota (its campaigns share the study's code).
            completion_code=case(
                (
                    ANNOTATORS.c.completion_code.is_(None)
                    & (done >= func.coalesce(_study_quota(), bindparam("quota", type_=Integer)))
                    & ~over_attention_limit_sql(failed, done),
                    bindparam("code", type_=String),
                ),
                else_=ANNOTATORS.c.completion_code,
            ),
        )
    )


def _study_quota() -> Any:
    """The ``tasks_per_worker`` of the study of the annotator row being updated (NULL: none)."""
    return (
        select(STUDIES.c.tasks_per_worker)
        .where(STUDIES.c.id == ANNOTATORS.c.study_id)
        .scalar_subquery()
    )


def credit(settings: CampaignSettings, completion_code: str, passed: bool | None) -> dict[str, Any]:
    """The parameters of :func:`credit_annotator` (but ``now``)."""
    most, share = attention_limit(settings)
    return {
        "failed": int(passed is False),
        "quota": settings.tasks_per_annotator,
        "code": completion_code,
        "most": most,
        "share": share,
    }


def code_withheld(settings: CampaignSettings, annotator: Any) -> bool:
    """Whether the attention policy withholds the completion code from ``annotator`` (a row
    with ``attention_failed`` and ``tasks_done``) as things stand: they failed too many
    attention checks. A code already issued stays theirs."""
    return over_attention_limit(settings, annotator.attention_failed, annotator.tasks_done)


def completion_withheld(campaign: Any, annotator: Any) -> bool:
    """What the owner is shown: ``campaign``'s own annotator, with no code issued, whom the
    attention policy withholds it from (:func:`code_withheld`)."""
    return (
        annotator.campaign_id == campaign.id
        and annotator.completion_code is None
        and code_withheld(campaign.config, annotator)
    )


ISSUE_COMPLETION_CODE = (
    update(ANNOTATORS)
    .where(ANNOTATORS.c.id == bindparam("annotator_id"))
    .values(completion_code=func.coalesce(ANNOTATORS.c.completion_code, bindparam("code")))
    .returning(ANNOTATORS.c.completion_code)
)


def completion_code(session: Session, annotator: Any, campaign: Any | None) -> str | None:
    """The annotator's completion code; issued here, once, when their campaign concluded
    (``CAMPAIGN_CONCLUDED``) before they met its quota and they ranked in it (the quota met
    issues it with the ranking: :func:`credit_annotator`), unless the attention policy withholds
    it (:func:`code_withheld`). ``annotator`` and ``campaign`` are
    their rows; a code issued here is committed."""
    code: str | None = annotator.completion_code
    if (
        code is None
        and campaign is not None
        and campaign.status in CAMPAIGN_CONCLUDED
        and annotator.tasks_done
        and not code_withheld(campaign.config, annotator)
    ):
        code = session.execute(
            ISSUE_COMPLETION_CODE,
            {"annotator_id": annotator.id, "code": campaign.completion_code},
        ).scalar_one()
        session.commit()
    return code


# The statement on one row, as the reference path and the hot path's steps run it.
CREDIT_ANNOTATOR = credit_annotator(ANNOTATORS.c.id == bindparam("annotator_id"))


__all__ = [
    "CREDIT_ANNOTATOR",
    "ISSUE_COMPLETION_CODE",
    "code_withheld",
    "completion_code",
    "completion_withheld",
    "credit",
    "credit_annotator",
    "over_attention_limit_sql",
]
