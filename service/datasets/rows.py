"""The rows of the three exports (rankings, consensus per round, pairwise preferences), built
from a :class:`~service.datasets.source.CampaignSource` a batch at a time, as columns
(:class:`Batch`), and how images travel. A column is a list or one of the types of
:mod:`service.datasets.columns` (a value in every row, orders, image bytes by key), which Arrow
builds without a Python object per row.

Every table has the same columns in JSONL and Parquet (``service.datasets.formats`` holds the
Parquet schema of each); the column lists are in docs/reference/datasets.md (generated).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rankloop.core.contracts import ImageRole
from rankloop.core.errors import InvalidInput
from service.datasets.agreement import round_alpha
from service.datasets.columns import Column, Embedded, Groups, Repeat
from service.datasets.pairs import ranking_pairs
from service.datasets.pickapic import CONSENSUS_USER, CONSENSUS_USER_ID, user_number
from service.datasets.prompt_counts import prompt_counts
from service.datasets.source import CampaignSource, ImageInfo, RoundInfo
from service.render_messages import IMAGE_SALT

IMAGE_MODES = ("key", "url", "embed")


class Batch(NamedTuple):
    """Rows of a table as columns (name to values, in the row's key order): a batch of one
    round's rankings, or one round's consensus."""

    columns: dict[str, Column]
    rows: int
    units: int  # what a progress bar counts: rankings (rankings, pairs) or rounds (consensus)


class Images:
    """How images travel with an export.

    ``key``: each image is named by its object-store key; ``url``: by a URL (``url(key)``);
    ``embed``: Parquet rows carry the bytes (``jpg_0``, ``images``), and a JSONL export writes
    them under ``folder`` (``images/<key>``) and names them by that relative path.
    """

    def __init__(self, mode: str = "key", get: Callable[[str], bytes] | None = None,
                 url: Callable[[str], str | None] | None = None, folder: Path | None = None,
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

    def url(self, key: str) -> str | None:
        """The image's URL (``image_0_url``), whatever the mode, when the exporter can give one
        (``None`` from the CLI with a local store and no ``--base-url``)."""
        if self._url is None:
            return None
        url = self._refs.get(key)  # a presigned URL costs a signature: once per image
        if url is None:
            url = self._url(key)
            if url is not None:
                self._refs[key] = url
                if len(self._refs) > self._size:
                    self._refs.popitem(last=False)
        return url

    def ref(self, key: str) -> str:
        if self.mode == "url":
            url = self.url(key)
            if url is None:
                raise InvalidInput("images by URL: a local store needs a base URL (--base-url)")
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
    config = source.campaign.config
    return {
        "campaign_id": source.campaign.id,
        "prompt": source.campaign.prompt,
        "negative_prompt": config.negative_prompt,
        "generator": config.generator,
        "model": config.model,
    }


def ranking_rows(source: CampaignSource, images: Images) -> Iterator[Batch]:
    """One row per ranking, a batch of one round's rankings at a time."""
    settings = source.campaign.settings
    # The image salt is the campaign's secret (it keeps image URLs unguessable): never exported.
    public = {k: v for k, v in settings.items() if k != IMAGE_SALT}
    common = {
        **_settings_columns(source),
        "settings": json.dumps(public, sort_keys=True),
        "seed": source.campaign.config.seed,
        "top_k": source.campaign.config.k,
    }
    per_round: dict[str, Any] = {}
    current = None
    for batch in source.ranking_batches():
        round_, n = batch.round, len(batch.ids)
        if round_.id != current:  # a round's columns are the same for each of its rankings
            current, shown = round_.id, round_.images
            per_round = {
                "prompt": source.prompt_of(round_),
                "round": round_.number,
                "round_kind": round_.kind,
                "state_key": round_.state_key,
                "previous_state_key": round_.previous_state_key,
                "image_ids": [i.id for i in shown],
                "image_keys": [i.key for i in shown],
                "image_roles": [i.role for i in shown],
                "image_indices": [i.index for i in shown],
                "image_models": [i.model for i in shown],  # an image set's; else null
                "image_refs": [images.ref(i.key) for i in shown],
                "images": [images.data(i.key) for i in shown] if images.embedded else None,
            }
        order = Groups(batch.orders, batch.flat)
        columns: dict[str, Column] = {k: Repeat(v, n) for k, v in common.items()}
        columns.update((k, Repeat(v, n)) for k, v in per_round.items())
        columns.update(
            ranking_id=batch.ids,
            annotator_id=batch.annotator_ids,
            order=order,
            positions=Groups(batch.positions, batch.flat),
            n_ranked=order.n_ranked(),
            ties=order.ties(),
            attention_passed=batch.attention_passed,
            late=batch.late,
            time_taken_s=[
                None if leased is None else (at - leased).total_seconds()
                for at, leased in zip(batch.submitted_at, batch.leased_at, strict=True)
            ],
            leased_at=batch.leased_at,
            submitted_at=batch.submitted_at,
            weight=_weights(round_, batch.annotator_ids),
        )
        yield Batch(columns, n, n)


def _weights(round_: RoundInfo, annotator_ids: list[str]) -> list[float | None]:
    """Each annotator's reliability weight in the round (``None`` before its consensus)."""
    if round_.consensus is None:
        return [None] * len(annotator_ids)
    weights = round_.consensus.weights
    return [None if (w := weights.get(a)) is None else float(w) for a in annotator_ids]


def consensus_rows(source: CampaignSource, images: Images) -> Iterator[Batch]:
    """One row per closed round: its consensus (positions best first, scores by position)."""
    for round_ in source.rounds():
        consensus = round_.consensus
        if consensus is None:
            continue
        by_position = {i.position: i for i in round_.images}
        winner = next(
            (by_position[p].id for p in consensus.order
             if p in by_position and by_position[p].role == ImageRole.CANDIDATE),
            None,
        )  # fmt: skip
        row = {
            "campaign_id": source.campaign.id,
            "round": round_.number,
            "round_kind": round_.kind,
            "method": consensus.method,
            "n_rankings": consensus.n_rankings,
            "close_reason": round_.close_reason,
            "order": [int(p) for p in consensus.order],
            "order_image_ids": [by_position[int(p)].id for p in consensus.order],
            "scores": [float(s) for s in consensus.scores],
            "agreement": consensus.agreement,
            "krippendorff_alpha": round_alpha(round_, source.round_answers(round_.id)),
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
        yield Batch({k: [v] for k, v in row.items()}, 1, 1)


def pair_rows(source: CampaignSource, images: Images,
              counts: Mapping[str, int] | None = None) -> Iterator[Batch]:  # fmt: skip
    """Pick-a-Pic v2 rows, one answer at a time (``service.datasets.pairs`` says how a ranking
    becomes pairs); ``weight``: the annotator's reliability weight in that round. ``counts``:
    rows per prompt over the whole export (default: this campaign's)."""
    counts = prompt_counts([source], "pairs") if counts is None else counts
    for batch in source.ranking_batches():
        round_ = batch.round
        yield _pairs_of(
            source, round_, images, counts, batch.positions, batch.annotator_ids, batch.ids,
            batch.submitted_at, batch.attention_passed, _weights(round_, batch.annotator_ids),
        )  # fmt: skip


def consensus_pair_rows(source: CampaignSource, images: Images,
                        counts: Mapping[str, int] | None = None) -> Iterator[Batch]:  # fmt: skip
    """The same layout from each round's consensus instead: ``annotator_id`` ``consensus``
    (``user_id`` 0), no ``ranking_id``, and ``weight`` the round's agreement (Kendall's W)."""
    counts = prompt_counts([source], "consensus_pairs") if counts is None else counts
    for round_ in source.rounds():
        consensus = round_.consensus
        if consensus is not None:
            yield _pairs_of(
                source, round_, images, counts, [consensus.order], [CONSENSUS_USER], [None],
                [consensus.created_at], [None], [consensus.agreement],
            )  # fmt: skip


def _pairs_of(source: CampaignSource, round_: RoundInfo, images: Images,
              per_prompt: Mapping[str, int], answers: Sequence[Any], user_ids: Sequence[str],
              ranking_ids: Sequence[int | None], created_at: Sequence[Any],
              attention_passed: Sequence[bool | None],
              weights: Sequence[float | None]) -> Batch:  # fmt: skip
    """The pairs of each answer (positions best first) of one round, as columns."""
    config = source.campaign.config
    model = config.model or config.generator  # an image set's images name their own
    by_position = {i.position: i for i in round_.images}
    candidates = [i.position for i in round_.images if i.role == ImageRole.CANDIDATE]
    refs: dict[str, str] = {}  # an image's reference, asked once (it may write a file)

    def ref(image: ImageInfo) -> str:
        found = refs.get(image.key)
        if found is None:
            found = refs[image.key] = images.ref(image.key)
        return found

    # Per answer: how many pairs it gave, so that its own columns repeat that many times.
    counts: list[int] = []
    firsts: list[ImageInfo] = []
    seconds: list[ImageInfo] = []
    labels: list[float] = []
    kinds: list[str] = []
    for positions in answers:
        before = len(labels)
        for pair in ranking_pairs(positions, candidates):
            firsts.append(by_position[pair.first])
            seconds.append(by_position[pair.second])
            labels.append(pair.label_0)
            kinds.append(pair.source)
        counts.append(len(labels) - before)
    n, prompt = len(labels), source.prompt_of(round_)

    def each(values: Sequence[Any]) -> list[Any]:
        return [v for v, c in zip(values, counts, strict=True) for _ in range(c)]

    columns: dict[str, Column] = {
        "caption": [prompt] * n,
        "jpg_0": Embedded([i.key for i in firsts], images) if images.embedded else [None] * n,
        "jpg_1": Embedded([i.key for i in seconds], images) if images.embedded else [None] * n,
        "label_0": labels,
        "label_1": [1.0 - label for label in labels],
        "image_0_uid": [i.id for i in firsts],
        "image_1_uid": [i.id for i in seconds],
        "best_image_uid": [
            "" if label == 0.5 else (a.id if label == 1.0 else b.id)
            for a, b, label in zip(firsts, seconds, labels, strict=True)
        ],
        "model_0": [i.model or model for i in firsts],
        "model_1": [i.model or model for i in seconds],
        "user_id": each(
            [CONSENSUS_USER_ID if u == CONSENSUS_USER else user_number(u) for u in user_ids]
        ),
        "ranking_id": each(ranking_ids),
        "created_at": each(created_at),
        "are_different": [a.key != b.key for a, b in zip(firsts, seconds, strict=True)],
        "has_label": [True] * n,
        "image_0_url": [images.url(i.key) for i in firsts],
        "image_1_url": [images.url(i.key) for i in seconds],
        "image_0_ref": [ref(i) for i in firsts],
        "image_1_ref": [ref(i) for i in seconds],
        "campaign_id": [source.campaign.id] * n,
        "round": [round_.number] * n,
        "pair_source": kinds,
        "attention_passed": each(attention_passed),
        "weight": each(weights),
        "annotator_id": each(user_ids),
        "num_example_per_prompt": Repeat(per_prompt[prompt], n),
    }
    return Batch(columns, n, len(answers))


def table_rows(table: str, sources: Sequence[CampaignSource], images: Images) -> Iterator[Batch]:
    """The rows of ``table`` of every source in turn: one table, whose pairs count their prompt's
    rows over all the sources (``num_example_per_prompt``)."""
    if table in ("pairs", "consensus_pairs"):
        counts = prompt_counts(sources, table)
        for source in sources:
            yield from PAIR_TABLES[table](source, images, counts)
        return
    for source in sources:
        yield from TABLES[table](source, images)


PAIR_TABLES = {"pairs": pair_rows, "consensus_pairs": consensus_pair_rows}
TABLES: dict[str, Callable[[CampaignSource, Images], Iterator[Batch]]] = {
    "rankings": ranking_rows,
    "consensus": consensus_rows,
    "pairs": pair_rows,
    "consensus_pairs": consensus_pair_rows,
}
