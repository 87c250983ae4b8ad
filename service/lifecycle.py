"""The owner's controls of a campaign: start, pause, resume, stop.

Each is a step (see :mod:`service`): it locks the campaign, checks the move is allowed (else
Conflict), records it in the audit log and commits; starting (or resuming a failed campaign)
returns the render messages of the rounds to render, for :func:`service.rendering.run_step`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import IMAGE_SET
from rankloop.core.contracts import CAMPAIGN_LIVE, CampaignStatus, RoundStatus
from rankloop.core.errors import Conflict
from service.models import utcnow
from service.render_heartbeats import drop_heartbeat
from service.render_messages import render_message
from service.rendering import Outcome, new_round
from service.transitions import audit, compare_and_set, get_campaign


def start(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    """Draft or paused -> running; the first round's render when there is none yet."""
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.PAUSED):
        raise Conflict(f"campaign is {campaign.status}: only a draft or paused campaign starts")
    outcome = Outcome()
    if not campaign.rounds and campaign.config.kind == IMAGE_SET:
        raise Conflict("an image set starts once its items are imported (POST .../items)")
    campaign.status = CampaignStatus.RUNNING
    audit(session, "campaign_started", campaign.id, actor=actor)
    if not campaign.rounds:
        outcome.renders.append(new_round(session, campaign, 0, None, None))
    session.commit()
    return outcome


def pause(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    return _set_status(
        session, campaign_id, (CampaignStatus.RUNNING,), CampaignStatus.PAUSED, actor
    )


def stop(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    # A campaign not yet ended, or a failed one (its owner gives up on it).
    allowed = (CampaignStatus.DRAFT, *CAMPAIGN_LIVE, CampaignStatus.FAILED)
    return _set_status(session, campaign_id, allowed, CampaignStatus.STOPPED, actor)


def resume(session: Session, campaign_id: str, actor: str | None = None) -> Outcome:
    """Paused -> running; failed -> running with the failed round's render sent again."""
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in (CampaignStatus.PAUSED, CampaignStatus.FAILED):
        raise Conflict(f"campaign is {campaign.status}: only a paused or failed campaign resumes")
    outcome = Outcome()
    if campaign.status == CampaignStatus.FAILED:
        for round_ in campaign.rounds:
            if round_.status == RoundStatus.FAILED and compare_and_set(
                session,
                round_,
                RoundStatus.FAILED,
                status=RoundStatus.RENDERING,
                error=None,
                render_enqueued_at=None,
            ):
                outcome.renders.append(render_message(campaign, round_))
        campaign.error = None
    if not campaign.rounds:
        outcome.renders.append(new_round(session, campaign, 0, None, None))
    campaign.status = CampaignStatus.RUNNING
    audit(session, "campaign_resumed", campaign.id, actor=actor)
    session.commit()
    for message in outcome.renders:
        # The failed render's last heartbeat (with its error) would read as a lost render.
        drop_heartbeat(message.campaign_id, message.round_number)
    return outcome


def _set_status(
    session: Session,
    campaign_id: str,
    allowed: tuple[CampaignStatus, ...],
    status: CampaignStatus,
    actor: str | None,
) -> Outcome:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in allowed:
        raise Conflict(f"campaign is {campaign.status}: cannot go to {status} from there")
    campaign.status = status
    if status == CampaignStatus.STOPPED:
        campaign.finished_at = utcnow()
    audit(session, f"campaign_{status}", campaign.id, actor=actor)
    session.commit()
    return Outcome()


CONTROLS = {"start": start, "pause": pause, "resume": resume, "stop": stop}

__all__ = ["CONTROLS", "pause", "resume", "start", "stop"]
