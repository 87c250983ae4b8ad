"""The dataset card of a dataset folder: ``README.md`` with the YAML header the Hugging Face Hub
reads (licence, the splits' files, features and sizes: ``configs`` and ``dataset_info``) and a
body saying how the data was collected: each campaign's settings, the crowd, the attention
policy, and the agreement within each split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankloop.core.campaign_settings import IMAGE_SET, attention_limit
from service.datasets.agreement import Pooled
from service.datasets.folder import PROMPT_COLUMNS, SplitSummary
from service.datasets.source import CampaignSource, Crowd
from service.datasets.splits import SPLITS, Splitter

TABLE_TEXT = {
    "pairs": "one row per pair of candidates an annotator's ranking ordered, in the layout of "
    "Pick-a-Pic v2 (what Diffusion-DPO reads)",
    "consensus_pairs": "one row per pair of candidates each round's consensus ordered, in the "
    "layout of Pick-a-Pic v2",
    "rankings": "one row per ranking an annotator gave",
}


@dataclass(frozen=True)
class StudyInfo:
    """What the card says of a study it holds."""

    id: str
    name: str
    prompts: int  # its campaigns, one per prompt


@dataclass
class SplitFacts:
    rounds: int = 0
    rankings: int = 0
    agreement: Pooled = field(default_factory=Pooled)


def split_facts(sources: Sequence[CampaignSource], splitter: Splitter) -> dict[str, SplitFacts]:
    """Rounds, rankings and agreement (Kendall's W, Krippendorff's alpha) of each split, its
    rounds being those whose prompt falls in it."""
    facts = {name: SplitFacts() for name in SPLITS}
    for source in sources:
        for round_ in source.rounds():
            answers = source.round_answers(round_.id)
            if not answers:
                continue
            split = facts[splitter(source.prompt_of(round_))]
            split.rounds += 1
            split.rankings += len(answers)
            split.agreement.add(round_, answers)
    return facts


def feature(name: str | None, type_: Any) -> dict[str, Any] | Any:
    """An Arrow field as a feature of the card's ``dataset_info`` (the ``datasets`` YAML form:
    ``dtype`` for a value, ``list`` for a list, a list of fields for a struct)."""
    import pyarrow as pa

    if pa.types.is_list(type_):
        inner = feature(None, type_.value_type)
        described: Any = {"list": inner}
    elif pa.types.is_struct(type_):
        described = {"struct": [feature(f.name, f.type) for f in type_]}
        if name is None:
            return described["struct"]
    else:
        dtype = {"double": "float64", "float": "float32"}.get(str(type_), str(type_))
        if name is None:
            return dtype
        described = {"dtype": dtype}
    return {"name": name, **described} if name is not None else described


def size_category(rows: int) -> str:
    """The Hub's size_categories bucket of ``rows``."""
    if rows < 1000:
        return "n<1K"
    bounds = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    index = min(int(math.log10(rows)) - 3, len(bounds) - 2)
    return f"{bounds[index]}<n<{bounds[index + 1]}"


def header(table: str, summaries: dict[str, SplitSummary], folder: Path, license_: str,
           name: str) -> dict[str, Any]:  # fmt: skip
    from service.datasets.formats import schema

    download = {n: sum((folder / f).stat().st_size for f in s.files) for n, s in summaries.items()}
    return {
        "license": license_,
        "pretty_name": name,
        "task_categories": ["text-to-image"],
        "tags": ["preference", "human-feedback", "ranking", "rankloop"],
        "size_categories": [size_category(sum(s.num_examples for s in summaries.values()))],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": n, "path": f"data/{n}-*.parquet"} for n in summaries],
            }
        ],
        "dataset_info": {
            "features": [feature(f.name, f.type) for f in schema(table)],
            "splits": [
                {"name": n, "num_bytes": s.num_bytes, "num_examples": s.num_examples}
                for n, s in summaries.items()
            ],
            "download_size": sum(download.values()),
            "dataset_size": sum(s.num_bytes for s in summaries.values()),
        },
    }


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def attention_text(source: CampaignSource) -> str:
    config = source.campaign.config
    if not config.attention_check:
        return "no attention check"
    most, share = attention_limit(config)
    withheld = (
        f"more than {most} checks and more than half of their tasks' checks"
        if share
        else f"more than {most} checks"
    )
    return (
        "each task adds a degraded copy of one of the round's images; it makes no pairs, "
        f"and the completion code is withheld from a participant who failed {withheld}"
    )


def card(sources: Sequence[CampaignSource], table: str, summaries: dict[str, SplitSummary],
         facts: dict[str, SplitFacts], folder: Path, splitter: Splitter,
         license_: str, name: str, studies: Sequence[StudyInfo] = ()) -> str:  # fmt: skip
    """The text of ``README.md``; ``studies``: those whose campaigns it holds."""
    import yaml

    crowds: list[Crowd] = [source.crowd() for source in sources]
    top = yaml.safe_dump(
        header(table, summaries, folder, license_, name), sort_keys=False, allow_unicode=True
    )
    fractions = ", ".join(f"{n} {f:g}" for n, f in zip(SPLITS, splitter.fractions, strict=True))
    lines = [
        "---", top.rstrip("\n"), "---", "", f"# {name}", "",
        f"Human rankings of generated images, collected with rankloop: table `{table}`, "
        f"{TABLE_TEXT[table]}. Column by column: rankloop's docs, reference/datasets.md.", "",
        *(f"It holds study {_cell(s.name) or '(unnamed)'} (`{s.id}`): {s.prompts} prompts, a "
          "campaign each, in the study's prompt order." for s in studies),
        *([""] if studies else []),
        "## Splits", "",
        f"By prompt (`{PROMPT_COLUMNS[table]}`): a stable hash of the prompt (BLAKE2b, "
        f"`service/datasets/splits.py`) picks its split with fractions {fractions}, so a prompt "
        "is never in two splits. Agreement is over each round's candidates (the attention image "
        "left out): Kendall's W averaged over rounds weighted by their rankings, and "
        "Krippendorff's alpha (ordinal) pooled over the rounds' images.", "",
        "| split | rows | prompts | rounds | rankings | Kendall's W | Krippendorff's alpha |",
        "|---|---|---|---|---|---|---|",
        *(f"| {n} | {s.num_examples} | {len(s.prompts)} | {facts[n].rounds} | "
          f"{facts[n].rankings} | {_fmt(facts[n].agreement.kendall_w)} | "
          f"{_fmt(facts[n].agreement.alpha)} |" for n, s in summaries.items()),
        "", "## How it was collected", "",
        "Each round shows an annotator a set of images for one prompt, in a shuffled order, "
        "and asks for a ranking, best first; a round closes at its quorum of rankings, and its "
        "consensus weights each annotator by their reliability. Annotators are pseudonyms.", "",
        "| campaign | prompt | generator | images per round | top-k | ties | quorum | rounds "
        "| consensus | annotators (recruited) | rankings | failed attention checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for source, crowd in zip(sources, crowds, strict=True):
        c = source.campaign.config
        lines.append(
            f"| {source.campaign.id} | {_cell(source.campaign.prompt)} | "
            f"{'the owner’s images' if c.kind == IMAGE_SET else _cell(c.model or c.generator)} | "
            f"{c.m} | {c.k or 'all'} | "
            f"{'allowed' if c.allow_ties else 'no'} | {c.annotators_per_round} | "
            f"{len(source.round_ids)} | {c.consensus_method} | {crowd.annotators} "
            f"({crowd.recruited}) | {crowd.rankings} | {crowd.attention_failed} |"
        )
    policies: dict[str, list[str]] = {}  # one line per policy, naming its campaigns
    for source in sources:
        policies.setdefault(attention_text(source), []).append(source.campaign.id)
    lines += ["", "Attention policy:", ""]
    lines += [f"- {', '.join(ids)}: {text}." for text, ids in policies.items()]
    lines += [
        "", "## Loading", "", "```python", "from datasets import load_dataset", "",
        'dataset = load_dataset("path/to/this/folder")  # or the Hub repository it was pushed to',
        "```", "", "## Licence", "",
        f"`{license_}` (as the exporter set it: `rankloop export --license`).", "",
    ]  # fmt: skip
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text in a Markdown table cell: no pipes or line breaks, at most 80 characters."""
    flat = " ".join(text.replace("|", "/").split())
    return flat if len(flat) <= 80 else flat[:79] + "…"
