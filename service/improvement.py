"""A campaign's improvement curve (:mod:`rankloop.core.improvement`) from its stored rounds.

What the curve needs beyond the rankings is where each round's current best sat among its
candidates, and which candidate the next round started from. The render stores the current best
rendered with the round (``Round.best_key``) from the same latent as the centre candidate, so the
centre is the candidate whose pixels are nearest that image, and the next round's start is the
candidate nearest the next round's best (the centre again when the point did not move).
Thumbnails are compared, at a small common size: no optimizer state is read.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from rankloop.core.contracts import VERDICT_ROUND, ImageRole, RoundStatus
from rankloop.core.improvement import BOOTSTRAP, RoundSteps, Strength, improvement_curve
from rankloop.core.storage import ObjectStore
from service.models import Annotator, Image, Ranking, Round

SIDE: Final = 24  # pixels a side, for telling images apart
_CACHE: OrderedDict[tuple[str, int, int], list[Strength]] = OrderedDict()
_CACHE_SIZE: Final = 64
_LOCK = threading.Lock()


def _pixels(store: ObjectStore, key: str) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(store.get(key))) as image:
        small = image.convert("RGB").resize((SIDE, SIDE))
        return np.asarray(small, dtype=float)


def _nearest(store: ObjectStore, candidates: Sequence[Image], key: str) -> int:
    target = _pixels(store, key)
    distances = [
        float(np.abs(_pixels(store, c.thumb_key or c.key) - target).mean()) for c in candidates
    ]
    return candidates[int(np.argmin(distances))].position


def round_steps(session: Session, store: ObjectStore, campaign_id: str) -> list[RoundSteps]:
    """The evidence of each closed steering round whose next round was rendered."""
    rounds = [
        r
        for r in session.scalars(
            select(Round)
            .where(Round.campaign_id == campaign_id)
            .order_by(Round.number)
            .options(selectinload(Round.images))
        )
        if r.kind != VERDICT_ROUND and r.best_key
    ]
    steps = []
    for current, following in itertools.pairwise(rounds):
        if current.status != RoundStatus.CLOSED or following.number != current.number + 1:
            continue
        candidates = [i for i in current.images if i.role == ImageRole.CANDIDATE]
        if not candidates:
            continue
        rankings = session.execute(
            select(Ranking.annotator_id, Ranking.positions)
            .join(Annotator, Annotator.id == Ranking.annotator_id)
            .where(Ranking.round_id == current.id, Annotator.excluded.is_(False))
            .order_by(Ranking.id)
        ).all()
        assert current.best_key is not None and following.best_key is not None
        steps.append(
            RoundSteps(
                number=current.number,
                rankings=[(a, p) for a, p in rankings],
                n_items=len(current.images),
                known_worst=frozenset(
                    i.position for i in current.images if i.role == ImageRole.ATTENTION
                ),
                centre=_nearest(store, candidates, current.best_thumb_key or current.best_key),
                next_centre=_nearest(
                    store, candidates, following.best_thumb_key or following.best_key
                ),
            )
        )
    return steps


def campaign_improvement(
    session: Session, store: ObjectStore, campaign_id: str, draws: int = BOOTSTRAP
) -> list[Strength]:
    """The campaign's curve; kept per process until another round closes (it only grows)."""
    closed = len(
        session.scalars(
            select(Round.id).where(
                Round.campaign_id == campaign_id, Round.status == RoundStatus.CLOSED
            )
        ).all()
    )
    key = (campaign_id, closed, draws)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    curve = improvement_curve(round_steps(session, store, campaign_id), draws)
    with _LOCK:
        _CACHE[key] = curve
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return curve


__all__ = ["campaign_improvement", "round_steps"]
