"""A fork: a new campaign that starts from round N of another, e.g. with another prompt or crowd.

The fork's first round is numbered N, like the round it starts from, and is rendered from the
same optimizer state (round N-1's ``state.npz``, read from the source's keys) and the same
consensus feed: before any ranking the fork's round N shows the images the source's round N
showed (cppn and tiny-sd on the CPU: the same bytes). ``rounds`` counts from 0 as in the source,
so a fork at N with ``rounds`` R runs rounds N..R-1. What shapes the optimizer state or the
renders it was made with (generator, model, size, m, k, seed, optimizer options, attention
check, steps, guidance, scheduler) cannot change in a fork; prompts, crowd, quorum, deadlines
and consensus method can. The completion code is the fork's own (random unless the fork names
one): the source's participants know the source's, and must not know the fork's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.orm import Session

from rankloop.core.contracts import CampaignStatus, ConsensusFeed
from rankloop.core.errors import Conflict, InvalidInput
from service.models import Campaign
from service.rendering import Outcome, new_round
from service.schemas import FORK_KEEPS, CampaignCreate, validate
from service.transitions import audit, find_round, get_campaign


def fork(session: Session, source_id: str, round_number: int, changes: dict[str, Any],
         owner_key_id: int | None = None, actor: str | None = None) -> Outcome:  # fmt: skip
    """Create and start the fork (a step: it commits); the outcome names it and holds its
    first render."""
    source = get_campaign(session, source_id)
    fixed = sorted(set(changes) & set(FORK_KEEPS))
    if fixed:
        raise InvalidInput(f"a fork keeps {', '.join(fixed)}: the optimizer state depends on them")
    if "start" in changes:
        raise InvalidInput("a fork always starts")
    round_ = find_round(session, source_id, round_number)
    if round_ is None or round_.kind is None:  # (it may still come: a conflict, not a 404)
        raise Conflict(f"campaign {source_id} has no rendered round {round_number}")
    previous = find_round(session, source_id, round_number - 1) if round_number > 0 else None
    if round_number > 0 and (previous is None or round_.consensus_in is None):
        raise Conflict(f"round {round_number} has no stored state to start from")
    fields = set(CampaignCreate.model_fields) - {"start"}
    body = {
        **source.config.model_dump(include=fields, exclude_none=True),
        "name": f"fork of {source.name or source.id} at round {round_number}",
        "prompt": source.prompt,
        **changes,
    }
    if "completion_url" not in changes and _names_a_code(body.get("completion_url")):
        # The source's completion URL names the source's code (its cc): a fork's crowd is sent
        # on with a code of its own, so the URL stays behind unless the owner names one.
        body.pop("completion_url")
    # The completion code (kept in its column, not in the settings) never carries over: the
    # source's participants know it, so with it they could claim the fork's work as done. The
    # fork gets a random one unless the owner names a code (or a URL with its cc).
    create: CampaignCreate = validate(CampaignCreate, body)
    if create.rounds <= round_number:
        raise InvalidInput(f"rounds counts from 0: a fork at round {round_number} needs more")
    campaign = Campaign(name=create.name, prompt=create.prompt, settings=create.settings(),
                        owner_key_id=owner_key_id, status=CampaignStatus.RUNNING)  # fmt: skip
    session.add(campaign)
    session.flush()
    audit(session, "campaign_forked", campaign.id, round_number, actor=actor,
          source=source.id)  # fmt: skip
    feed = (
        None if round_.consensus_in is None else ConsensusFeed.model_validate(round_.consensus_in)
    )
    message = new_round(session, campaign, round_number, previous, feed)
    session.commit()
    return Outcome(renders=[message], campaign_id=campaign.id)


def _names_a_code(url: Any) -> bool:
    """Whether a completion URL carries a completion code (Prolific's ``cc``)."""
    return isinstance(url, str) and "cc" in parse_qs(urlsplit(url).query)
