"""The rows of the three exports (rankings, consensus per round, pairwise preferences), built
from a :class:`~service.datasets.source.CampaignSource` one at a time, and how images travel.

Every table has the same columns in JSONL and Parquet (``service.datasets.formats`` holds the
Parquet schema of each); the column lists are in the README's "Datasets" section.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rankloop.core.contracts import CANDIDATE
from service.datasets.pairs import ranking_pairs
from service.datasets.source import CampaignSource, RoundInfo
from service.rendering import IMAGE_SALT

IMAGE_MODES = ("key", "url", "embed")


class Images:
    """How images travel with an export.

    ``key``: each image is named by its object-store key; ``url``: by a URL (``url(key)``);
    ``embed``: Parquet rows carry the bytes (``jpg_0``, ``images``), and a JSONL export writes
    them under ``folder`` (``images/<key>``) and names them by that relative path.
    """

    def __init__(self, mode: str = "key", get: Callable[[str], bytes] | None = None,
                 url: Callable[[str], str] | None = None, folder: Path | None = None,
                 cache: int = 64):  # fmt: skip
        if mode not in IMAGE_MODES:
            raise ValueError(f"images={mode!r}: use one of {', '.join(IMAGE_MODES)}")
        if mode == "url" and url is None:
            raise ValueError("images=url needs a base URL or a store that presigns")
        if mode == "embed" and get is None:
            raise ValueError("images=embed needs the object store")
        self.mode, self._get, self._url, self.folder = mode, get, url, folder
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._refs: OrderedDict[str, str] = OrderedDict()
        self._size = cache

    @property
    def embedded(self) -> bool:
        """Whether rows carry bytes (Parquet with ``embed``)."""
        return self.mode == "embed" and self.folder is None

    def ref(self, key: str) -> str:
        if self.mode == "url":
            assert self._url is not None
            url = self._refs.get(key)  # a presigned URL costs a signature: once per image
            if url is None:
                url = self._refs[key] = self._url(key)
                if len(self._refs) > self._size:
                    self._refs.popitem(last=False)
            return url
        if self.mode == "embed" and self.folder is not None:
            path = self.folder / "images" / key
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self._bytes(key))
            return f"images/{key}"
        return key

    def data(self, key: str) -> bytes | None:
        return self._bytes(key) if self.embedded else None

    def _bytes(self, key: str) -> bytes:
        data = self._cache.get(key)
        if data is None:
            assert self._get is not None
            data = self._cache[key] = self._get(key)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return data


def _settings_columns(source: CampaignSource) -> dict[str, Any]:
    settings = source.campaign.settings
    return {
        "campaign_id": source.campaign.id,
        "prompt": source.campaign.prompt,
        "negative_prompt": settings.get("negative_prompt") or "",
        "generator": settings.get("generator"),
        "model": settings.get("model"),
    }


def ranking_rows(source: CampaignSource, images: Images) -> Iterator[dict[str, Any]]:
    """One row per ranking."""
    settings = source.campaign.settings
    # The image salt is the campaign's secret (it keeps image URLs unguessable): never exported.
    public = {k: v for k, v in settings.items() if k != IMAGE_SALT}
    common = {
        **_settings_columns(source),
        "settings": json.dumps(public, sort_keys=True),
        "seed": settings.get("seed"),
        "top_k": settings.get("k"),
    }
    per_round: dict[str, Any] = {}
    current = None
    for round_, ranking in source.rankings():
        if round_.id != current:  # a round's columns are the same for each of its rankings
            current, shown = round_.id, round_.images
            per_round = {
                "round": round_.number,
                "round_kind": round_.kind,
                "state_key": round_.state_key,
                "previous_state_key": round_.previous_state_key,
                "image_ids": [i.id for i in shown],
                "image_keys": [i.key for i in shown],
                "image_roles": [i.role for i in shown],
                "image_indices": [i.index for i in shown],
                "image_refs": [images.ref(i.key) for i in shown],
                "images": [images.data(i.key) for i in shown] if images.embedded else None,
            }
        order = _id_groups(ranking.order)
        taken = (
            (ranking.submitted_at - ranking.leased_at).total_seconds()
            if ranking.leased_at is not None
            else None
        )
        yield {
            **common,
            **per_round,
            "ranking_id": ranking.id,
            "annotator_id": ranking.annotator_id,
            "order": order,
            "positions": _id_groups(ranking.positions),
            "n_ranked": sum(len(g) for g in order),
            "ties": len(order) < sum(len(g) for g in order),
            "attention_passed": ranking.attention_passed,
            "late": ranking.late,
            "time_taken_s": taken,
            "leased_at": ranking.leased_at,
            "submitted_at": ranking.submitted_at,
            "weight": round_.weight(ranking.annotator_id),
        }


def consensus_rows(source: CampaignSource, images: Images) -> Iterator[dict[str, Any]]:
    """One row per closed round: its consensus (positions best first, scores by position)."""
    for round_ in source.rounds():
        consensus = round_.consensus
        if consensus is None:
            continue
        by_position = {i.position: i for i in round_.images}
        winner = next(
            (by_position[p].id for p in consensus.order
             if p in by_position and by_position[p].role == CANDIDATE),
            None,
        )  # fmt: skip
        yield {
            "campaign_id": source.campaign.id,
            "round": round_.number,
            "round_kind": round_.kind,
            "method": consensus.method,
            "n_rankings": consensus.n_rankings,
            "order": [int(p) for p in consensus.order],
            "order_image_ids": [by_position[int(p)].id for p in consensus.order],
            "scores": [float(s) for s in consensus.scores],
            "agreement": consensus.agreement,
            "weights": [
                {"annotator_id": a, "weight": float(w)}
                for a, w in sorted(consensus.weights.items())
            ],
            "winner_image_id": winner,
            "image_ids": [i.id for i in round_.images],
            "image_keys": [i.key for i in round_.images],
            "image_roles": [i.role for i in round_.images],
            "image_refs": [images.ref(i.key) for i in round_.images],
            "created_at": consensus.created_at,
        }


def pair_rows(source: CampaignSource, images: Images) -> Iterator[dict[str, Any]]:
    """Pick-a-Pic v2 rows, one answer at a time (``service.datasets.pairs`` says how a ranking
    becomes pairs); ``weight``: the annotator's reliability weight in that round."""
    for round_, ranking in source.rankings():
        yield from _pairs_of(
            source, round_, images, ranking.positions, ranking.annotator_id, ranking.id,
            ranking.submitted_at, ranking.attention_passed, round_.weight(ranking.annotator_id),
        )  # fmt: skip


def consensus_pair_rows(source: CampaignSource, images: Images) -> Iterator[dict[str, Any]]:
    """The same layout from each round's consensus instead: ``user_id`` ``consensus``, no
    ``ranking_id``, and ``weight`` the round's agreement (Kendall's W)."""
    for round_ in source.rounds():
        consensus = round_.consensus
        if consensus is not None:
            yield from _pairs_of(
                source, round_, images, consensus.order, CONSENSUS_USER, None,
                consensus.created_at, None, consensus.agreement,
            )  # fmt: skip


CONSENSUS_USER = "consensus"


def _pairs_of(source: CampaignSource, round_: RoundInfo, images: Images, positions: list[Any],
              user_id: str, ranking_id: int | None, created_at: Any,
              attention_passed: bool | None, weight: float | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    settings = source.campaign.settings
    model = str(settings.get("model") or settings.get("generator") or "")
    by_position = {i.position: i for i in round_.images}
    candidates = [i.position for i in round_.images if i.role == CANDIDATE]
    for pair in ranking_pairs(positions, candidates):
        first, second = by_position[pair.first], by_position[pair.second]
        tie = pair.label_0 == 0.5
        best = "" if tie else (first.id if pair.label_0 == 1.0 else second.id)
        yield {
            "caption": source.campaign.prompt,
            "jpg_0": images.data(first.key),
            "jpg_1": images.data(second.key),
            "label_0": pair.label_0,
            "label_1": 1.0 - pair.label_0,
            "image_0_uid": first.id,
            "image_1_uid": second.id,
            "best_image_uid": best,
            "model_0": model,
            "model_1": model,
            "user_id": user_id,
            "ranking_id": ranking_id,
            "created_at": created_at,
            "are_different": first.key != second.key,
            "has_label": True,
            "image_0_ref": images.ref(first.key),
            "image_1_ref": images.ref(second.key),
            "campaign_id": source.campaign.id,
            "round": round_.number,
            "pair_source": pair.source,
            "attention_passed": attention_passed,
            "weight": weight,
        }


def _id_groups(order: list[Any]) -> list[list[Any]]:
    """A stored order (a list inside it is a tied group) as groups: one list per place."""
    return [e if type(e) is list else [e] for e in order]


TABLES: dict[str, Callable[[CampaignSource, Images], Iterator[dict[str, Any]]]] = {
    "rankings": ranking_rows,
    "consensus": consensus_rows,
    "pairs": pair_rows,
    "consensus_pairs": consensus_pair_rows,
}
