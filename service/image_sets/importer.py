"""Items into a draft image-set campaign, all or nothing: each item becomes one round (its
images shuffled per annotator on the task page as any round's are, its attention image last),
open and waiting for its quorum while the campaign runs, or queued behind the
:data:`~rankloop.core.image_sets.OPEN_ITEMS` open ones (:mod:`service.image_sets.rounds` opens
it when one closes); no optimizer and no render.

The rows are written in the caller's transaction (flushed and let go of every
:data:`FLUSH_EVERY` items: flat memory) and committed by the caller once every item passed: a
malformed item is reported with its line and nothing of the import is kept. Or, when the owner
asks (``on_error="skip"``), a malformed item is left out and reported (its line, its item id,
why), and the good items are imported: an item is checked whole (every image decoded) before its
round joins the session, so a skipped item leaves no row. The images go to the store as they are
read, by content: an import run again after a failure finds them there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rankloop.core.campaign_settings import IMAGE_SET, MAX_ROUNDS
from rankloop.core.contracts import MAX_PROMPT, CampaignStatus, ImageRole, RoundStatus
from rankloop.core.errors import Conflict, InvalidInput
from rankloop.core.image_sets import (
    MAX_IMAGES,
    MAX_ITEMS,
    MAX_MODEL,
    MAX_SKIPS_REPORTED,
    MIN_IMAGES,
    OPEN_ITEMS,
    OnError,
    sniff,
)
from rankloop.core.storage import ObjectStore
from service.image_sets.items import RawItem
from service.image_sets.storing import Blobs, attention_image, attention_source, check_image
from service.models import Campaign, Image, Round, utcnow
from service.statements import initial_quorum
from service.transitions import audit, get_campaign

FLUSH_EVERY = 500  # items written and let go of at a time
ROUND_KIND = "image_set"  # rounds.kind of an item's round
TOO_MANY = "more than "  # the import's own limit: refused whole even when skipping


@dataclass(frozen=True)
class Skipped:
    """An item left out of an import, and why."""

    line: int
    item_id: str
    reason: str


@dataclass(frozen=True)
class ImportReport:
    campaign_id: str
    items: int  # imported now
    images: int  # candidates imported now (attention images not counted)
    stored: int  # image files put in the store now (attention images included)
    reused: int  # image files the store held already (the same image elsewhere)
    rounds: int  # the campaign's rounds after the import
    skipped: int = 0  # items left out (on_error="skip")
    skipped_rows: tuple[Skipped, ...] = ()  # the first MAX_SKIPS_REPORTED of them


def import_items(session: Session, store: ObjectStore, campaign_id: str,
                 items: Iterable[RawItem], progress: Callable[[int], None] | None = None,
                 actor: str | None = None, now: dt.datetime | None = None,
                 on_error: OnError = "abort",
                 on_skip: Callable[[Skipped], None] | None = None) -> ImportReport:  # fmt: skip
    """Add ``items`` to the draft image set ``campaign_id`` in the caller's transaction (the
    caller commits; on an error it rolls back and nothing was added). ``on_error="skip"``:
    a malformed item is left out, told to ``on_skip`` and counted in the report."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id, lock=True)
    config = campaign.config
    if config.kind != IMAGE_SET:
        raise Conflict(f"campaign {campaign_id} renders its images: items go into an image set")
    if campaign.status != CampaignStatus.DRAFT:
        raise Conflict(f"campaign is {campaign.status}: items go into a draft image set")
    seen: dict[str, int] = {
        item_id: 0
        for item_id in session.scalars(
            select(Round.item_id).where(Round.campaign_id == campaign_id)
        )
        if item_id is not None
    }
    number = session.scalar(select(func.count()).where(Round.campaign_id == campaign_id)) or 0
    first = number
    open_now = (
        session.scalar(
            select(func.count()).where(
                Round.campaign_id == campaign_id, Round.status == RoundStatus.OPEN
            )
        )
        or 0
    )
    blobs = Blobs(store)
    sizes: list[int] = []  # smallest and largest item
    images = 0
    skipped: list[Skipped] = []
    n_skipped = 0
    for item in items:
        opens = open_now < OPEN_ITEMS  # the rest wait their turn (service.image_sets.rounds)
        try:
            if item.error is not None:
                raise InvalidInput(item.error)
            _check(item, seen, number - first)
            n = _add_round(session, blobs, campaign, item, number, config.attention_check, now,
                           opens)  # fmt: skip
        except InvalidInput as exc:
            if on_error != "skip" or str(exc).startswith(TOO_MANY):
                raise
            n_skipped += 1
            skip = Skipped(item.line, item.item_id, str(exc))
            if len(skipped) < MAX_SKIPS_REPORTED:
                skipped.append(skip)
            if on_skip is not None:
                on_skip(skip)
            continue
        seen[item.item_id] = item.line
        open_now += opens
        sizes = [min(sizes[0], n), max(sizes[1], n)] if sizes else [n, n]
        images += n
        number += 1
        if progress is not None:
            progress(1)
        if (number - first) % FLUSH_EVERY == 0:
            session.flush()
            session.expunge_all()
            campaign = get_campaign(session, campaign_id)
    if number == first:
        why = f": all {n_skipped} items were malformed" if n_skipped else ""
        raise NothingImported(f"no item to import{why}", tuple(skipped))
    _fit_settings(session, campaign_id, sizes, number, earlier=first > 0)
    audit(session, "image_set_imported", campaign_id, actor=actor, items=number - first,
          images=images, stored=blobs.stored, reused=blobs.reused,
          skipped=n_skipped)  # fmt: skip
    session.flush()
    return ImportReport(campaign_id, number - first, images, blobs.stored, blobs.reused, number,
                        n_skipped, tuple(skipped))  # fmt: skip


class NothingImported(InvalidInput):
    """No item passed (400); with ``on_error="skip"``, the items left out and why."""

    def __init__(self, message: str, skipped: tuple[Skipped, ...] = ()):
        super().__init__(message)
        self.skipped = skipped
        self.details = [
            {"field": "items", "line": s.line, "item_id": s.item_id, "message": s.reason}
            for s in skipped
        ] or None


def _check(item: RawItem, seen: dict[str, int], imported: int) -> None:
    where = f"line {item.line} (item {item.item_id})"
    if item.item_id in seen:
        before = seen[item.item_id]
        already = f"line {before}" if before else "an earlier import"
        raise InvalidInput(f"{where}: the item id is used twice (first: {already})")
    if imported >= MAX_ITEMS:
        raise InvalidInput(f"{TOO_MANY}{MAX_ITEMS} items in one import ({where})")
    if not MIN_IMAGES <= len(item.images) <= MAX_IMAGES:
        raise InvalidInput(
            f"{where}: {len(item.images)} images; an item has {MIN_IMAGES} to {MAX_IMAGES}"
        )
    if not item.prompt or len(item.prompt) > MAX_PROMPT:
        raise InvalidInput(f"{where}: the prompt is empty or over {MAX_PROMPT} characters")
    for image in item.images:
        if image.model is not None and len(image.model) > MAX_MODEL:
            raise InvalidInput(f"{image.where}: a model name over {MAX_MODEL} characters")


def _add_round(session: Session, blobs: Blobs, campaign: Campaign, item: RawItem, number: int,
               attention: bool, now: dt.datetime, opens: bool) -> int:  # fmt: skip
    """The item's round (open, or queued behind the open ones) and its images; the number of
    candidates."""
    round_ = Round(
        campaign_id=campaign.id, number=number, kind=ROUND_KIND,
        status=RoundStatus.OPEN if opens else RoundStatus.QUEUED, prompt=item.prompt,
        item_id=item.item_id, opened_at=now if opens else None, deadline=None,
        quorum=initial_quorum(campaign.config),
    )  # fmt: skip
    degraded_from = attention_source(item.item_id, len(item.images)) if attention else -1
    attention_bytes: bytes | None = None
    attention_pixels = None
    for position, raw in enumerate(item.images):
        data, fmt, pixels = check_image(raw)
        key, thumb, _ = blobs.put(data, fmt, pixels)
        round_.images.append(Image(position=position, index=position, key=key, thumb_key=thumb,
                                   role=ImageRole.CANDIDATE, model=raw.model))  # fmt: skip
        if position == degraded_from:
            attention_bytes = attention_image(pixels, fmt)
            attention_pixels = pixels
    if attention_bytes is not None and attention_pixels is not None:
        n = len(item.images)
        key, thumb, _ = blobs.put(attention_bytes, sniff(attention_bytes), attention_pixels)
        round_.images.append(Image(position=n, index=n, role=ImageRole.ATTENTION, key=key,
                                   thumb_key=thumb))  # fmt: skip
    # Only now, every image checked: a skipped item leaves no row. Its images join it through
    # the relationship: one flush per batch.
    session.add(round_)
    return len(item.images)


def _fit_settings(session: Session, campaign_id: str, sizes: list[int], rounds: int,
                  earlier: bool) -> None:  # fmt: skip
    """The campaign's ``m`` (its largest item; ``earlier``: items of an earlier import count),
    ``rounds`` (its items, within the round budget) and a check that top-k fits the smallest
    item."""
    campaign = get_campaign(session, campaign_id)
    smallest, largest = sizes
    k = campaign.config.k
    if k is not None and k > smallest:
        raise InvalidInput(f"k={k}: an item holds only {smallest} images; rank at most that many")
    m = max(largest, campaign.config.m) if earlier else largest
    campaign.settings = {**campaign.settings, "m": m, "rounds": min(rounds, MAX_ROUNDS)}
