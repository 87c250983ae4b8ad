"""Per-process caches of what never changes: a campaign's prompt, settings and completion code
(fixed at creation), and an opened round's images (and an image set's round's prompt). Both are keyed by values unique in any
database (random 128-bit campaign ids; campaign id and round number), so one cache serves any
number of databases, and both are bounded (least recently added dropped first)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import CampaignSettings
from rankloop.core.contracts import RoundStatus
from rankloop.core.errors import NotFound
from service.models import Campaign, Image, Round

MAX_ENTRIES = 4096
_LOCK = threading.Lock()


@dataclass(frozen=True)
class CampaignView:
    """The part of a campaign the hot path reads."""

    id: str
    prompt: str
    config: CampaignSettings  # the stored settings, parsed once (rankloop.core.campaign_settings)
    completion_code: str


@dataclass(frozen=True)
class ImageView:
    """A round's image as the hot path needs it (a detached, immutable copy of the row)."""

    id: str
    position: int
    index: int
    role: str
    key: str
    thumb_key: str | None


@dataclass(frozen=True)
class RoundRef:
    """A round as the hot path names it (``status`` for :func:`round_images`'s cache rule)."""

    id: int
    campaign_id: str
    number: int
    status: str = RoundStatus.OPEN


class RoundLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def campaign_id(self) -> str: ...
    @property
    def number(self) -> int: ...
    @property
    def status(self) -> str: ...


_CAMPAIGNS: OrderedDict[str, CampaignView] = OrderedDict()
_IMAGES: OrderedDict[tuple[str, int], tuple[ImageView, ...]] = OrderedDict()
_PROMPTS: OrderedDict[tuple[str, int], str] = OrderedDict()


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    with _LOCK:
        cache[key] = value
        while len(cache) > MAX_ENTRIES:
            cache.popitem(last=False)


def campaign_view(session: Session, campaign_id: str) -> CampaignView:
    """A campaign's prompt, settings and completion code; NotFound when there is none."""
    with _LOCK:
        cached = _CAMPAIGNS.get(campaign_id)
    if cached is not None:
        return cached
    row = session.execute(
        select(Campaign.id, Campaign.prompt, Campaign.settings, Campaign.completion_code).where(
            Campaign.id == campaign_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    view = CampaignView(
        row.id, row.prompt, CampaignSettings.from_stored(row.settings or {}), row.completion_code
    )
    _remember(_CAMPAIGNS, campaign_id, view)
    return view


def round_images(session: Session, round_: RoundLike) -> tuple[ImageView, ...]:
    """The images of a round in position order; cached once the round is open (they never
    change after that)."""
    cache_key = (round_.campaign_id, round_.number)
    with _LOCK:
        cached = _IMAGES.get(cache_key)
    if cached is not None:
        return cached
    rows = session.execute(
        select(Image.id, Image.position, Image.index, Image.role, Image.key, Image.thumb_key)
        .where(Image.round_id == round_.id)
        .order_by(Image.position)
    ).all()
    images = tuple(ImageView(*row) for row in rows)
    if images and round_.status != RoundStatus.RENDERING:
        _remember(_IMAGES, cache_key, images)
    return images


def round_prompt(session: Session, round_: RoundLike) -> str:
    """An image set's round's own prompt (its item's), cached: it never changes."""
    cache_key = (round_.campaign_id, round_.number)
    with _LOCK:
        cached = _PROMPTS.get(cache_key)
    if cached is not None:
        return cached
    prompt = session.scalar(select(Round.prompt).where(Round.id == round_.id)) or ""
    _remember(_PROMPTS, cache_key, prompt)
    return prompt


__all__ = [
    "CampaignView",
    "ImageView",
    "RoundRef",
    "campaign_view",
    "round_images",
    "round_prompt",
]
