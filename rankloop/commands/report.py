"""``rankloop report <campaign>``: the crowd's verdict (delivered vs starting image, with its
95 % interval) first, then agreement and reliability, as a figure (PNG and PDF,
:mod:`rankloop.commands.report_figure`) and a short Markdown summary.

Per round: Kendall's W and Krippendorff's alpha (ordinal) of the answers over the candidates
(the attention image left out: it would inflate both); for the campaign: alpha pooled over
every round's images, and W averaged over rounds weighted by their rankings. Per annotator:
rankings, failed attention checks, mean Kendall tau with the round's consensus, and the
reliability weight of their last round.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from rankloop.commands.errors import CampaignId, atomic_output
from rankloop.core.consensus.krippendorff import (
    image_units,
    krippendorff_alpha_ordinal,
    tau_with,
)
from rankloop.core.contracts import ImageRole
from rankloop.core.errors import NotFound
from rankloop.core.improvement import Strength
from rankloop.core.verdict import Verdict

# Agreement intervals: a percentile bootstrap over a round's rankings (its annotators' answers
# resampled with replacement), seeded by the round's number so a report is reproducible.
AGREEMENT_DRAWS = 200


@dataclass
class RoundRow:
    round: int
    rankings: int
    kendall_w: float | None
    alpha: float | None
    moved: float | None
    step: float | None
    w_interval: tuple[float, float] | None = None
    alpha_interval: tuple[float, float] | None = None


@dataclass
class AnnotatorRow:
    rankings: int = 0
    attention_failed: int = 0
    taus: list[float] = field(default_factory=list)


def collect(
    sessions, campaign_id: str
) -> tuple[list[RoundRow], dict[str, AnnotatorRow], float | None]:
    """The report's numbers, read through the export's batched source."""
    from sqlalchemy import select

    from rankloop.core.consensus import kendall_w
    from rankloop.core.consensus.agreement import mid_ranks
    from rankloop.core.consensus.evidence import parse_rankings
    from service.datasets import CampaignSource
    from service.models import Round

    source = CampaignSource(sessions, campaign_id)
    with sessions() as session:
        stats = dict(
            session.execute(
                select(Round.id, Round.stats).where(Round.campaign_id == campaign_id)
            ).all()
        )
    by_round: dict[int, list[Any]] = defaultdict(list)
    for round_, ranking in source.rankings():
        by_round[round_.id].append(ranking)
    rounds: list[RoundRow] = []
    annotators: defaultdict[str, AnnotatorRow] = defaultdict(AnnotatorRow)
    pooled: list[np.ndarray] = []
    for round_ in source.rounds():
        rankings = by_round.pop(round_.id, [])
        candidates = [i.position for i in round_.images if i.role == ImageRole.CANDIDATE]
        round_stats = stats.get(round_.id) or {}
        if not rankings or not candidates:
            continue
        answers = parse_rankings(
            [(r.annotator_id, r.positions) for r in rankings], len(round_.images)
        )
        ranks = [mid_ranks(a, candidates) for a in answers]
        units = image_units(ranks)
        pooled.extend(units)
        reference = None
        if round_.consensus is not None:
            order = [p for p in round_.consensus.order if p in set(candidates)]
            reference = np.array([order.index(p) + 1 for p in candidates], dtype=float)
        for ranking, rank in zip(rankings, ranks, strict=True):
            row = annotators[ranking.annotator_id]
            row.rankings += 1
            row.attention_failed += ranking.attention_passed is False
            tau = None if reference is None else tau_with(rank, reference)
            if tau is not None:
                row.taus.append(tau)
        w_interval, alpha_interval = agreement_intervals(ranks, round_.number)
        rounds.append(RoundRow(
            round_.number, len(rankings), kendall_w(ranks) if len(ranks) > 1 else None,
            krippendorff_alpha_ordinal(units), _number(round_stats.get("moved")),
            _number(round_stats.get("step")), w_interval, alpha_interval,
        ))  # fmt: skip
    return rounds, dict(annotators), krippendorff_alpha_ordinal(pooled)


def agreement_intervals(
    ranks: Sequence[np.ndarray], seed: int, draws: int = AGREEMENT_DRAWS
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """95 % percentile-bootstrap intervals of Kendall's W and Krippendorff's alpha of one
    round's rank vectors; None where fewer than three rankings leave nothing to resample."""
    from rankloop.core.consensus import kendall_w

    if len(ranks) < 3:
        return None, None
    rng = np.random.default_rng(seed)
    ws: list[float] = []
    alphas: list[float] = []
    for _ in range(draws):
        sample = [ranks[i] for i in rng.integers(0, len(ranks), len(ranks))]
        w = kendall_w(sample)
        alpha = krippendorff_alpha_ordinal(image_units(sample))
        if w is not None and np.isfinite(w):
            ws.append(float(w))
        if alpha is not None and np.isfinite(alpha):
            alphas.append(float(alpha))

    def interval(values: list[float]) -> tuple[float, float] | None:
        if len(values) < draws // 2:  # mostly undefined (every draw one answer repeated)
            return None
        low, high = np.percentile(values, [2.5, 97.5])
        return float(low), float(high)

    return interval(ws), interval(alphas)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def markdown(campaign_id: str, rounds: list[RoundRow], annotators: dict[str, AnnotatorRow],
             alpha: float | None, png: str, verdict: Verdict | None = None,
             curve: Sequence[Strength] = (),
             reliability: Mapping[str, float] | None = None) -> str:  # fmt: skip
    scored = [(r.kendall_w, r.rankings) for r in rounds if r.kendall_w is not None]
    total = sum(n for _, n in scored)
    w = sum(value * n for value, n in scored) / total if total else None
    verdict = verdict or Verdict()
    lines = [
        f"# Campaign {campaign_id}", "",
        f"**The crowd's verdict:** {verdict.sentence()}.", "",
        *(["Strength of each round's best image relative to round 0's (scaled Plackett–Luce "
           "utilities chained through the rounds, 95 % bootstrap interval): "
           + ", ".join(f"round {p.round}: {p.strength:.2f} [{p.low:.2f}, {p.high:.2f}]"
                       for p in curve) + ".", ""] if curve else []),
        f"{sum(r.rankings for r in rounds)} rankings over {len(rounds)} rounds by "
        f"{len(annotators)} annotators. Kendall's W (mean over rounds, weighted by rankings): "
        f"{_fmt(w)}; Krippendorff's alpha (ordinal, every round's images): {_fmt(alpha)}.", "",
        f"![progress]({png})", "",
        "| round | rankings | Kendall's W | alpha | moved | step |", "|---|---|---|---|---|---|",
        *(f"| {r.round} | {r.rankings} | {_fmt(r.kendall_w)} | {_fmt(r.alpha)} | {_fmt(r.moved)} "
          f"| {_fmt(r.step)} |" for r in rounds),
        "", "| annotator | rankings | failed attention | mean tau with consensus | reliability |",
        "|---|---|---|---|---|",
        *(f"| {a} | {row.rankings} | {row.attention_failed} | "
          f"{_fmt(float(np.mean(row.taus)) if row.taus else None)} | "
          f"{_fmt((reliability or {}).get(a))} |"
          for a, row in sorted(annotators.items())),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


@click.command("report")
@click.argument("target", metavar="CAMPAIGN_ID|STUDY_ID", type=CampaignId())
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="folder for report-<id>.html, .md, .png and .pdf")  # fmt: skip
@click.option("--url", help="SQLAlchemy URL (default: RANKLOOP_DATABASE_URL)")
@click.option("--store", "store_url", help="object store (default: RANKLOOP_STORE_URL); the "
              "improvement curve and the strip of best images read the images there")  # fmt: skip
def report_command(target: str, out: Path, url: str | None, store_url: str | None) -> None:
    """The crowd's verdict (with its 95 % interval), the improvement curve, agreement (Kendall's
    W, Krippendorff's alpha) and reliability of a campaign, or a study's verdict and each of
    its campaigns': one self-contained HTML page (images embedded, opens offline), a figure
    (PNG and PDF) and Markdown."""
    from rankloop.commands.export import open_store
    from rankloop.commands.report_study import study_report
    from service.cli import database_url
    from service.datasets import sessions_for
    from service.models import Study

    sessions, dispose = sessions_for(database_url(url))
    try:
        with sessions() as session:
            is_study = session.get(Study, target) is not None
        if is_study:
            text = study_report(sessions, target, out)
        else:
            text = _campaign_report(sessions, open_store(store_url), target, out)
    finally:
        dispose()
    click.echo(text)


def _campaign_report(sessions: Any, store: Any, campaign_id: str, out: Path) -> str:
    from rankloop.commands.report_figure import draw
    from rankloop.commands.report_html import campaign_html
    from service.api.common import reliability_weights
    from service.improvement import campaign_improvement
    from service.models import Campaign
    from service.verdicts import campaign_verdict

    rounds, annotators, alpha = collect(sessions, campaign_id)
    with sessions() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        prompt, settings = campaign.prompt, dict(campaign.settings)
        settings.pop("image_salt", None)  # a secret of the deployment, not a setting
        reliability = reliability_weights(campaign)
        verdict = campaign_verdict(session, campaign_id)
        try:
            curve = campaign_improvement(session, store, campaign_id)
        except (NotFound, OSError) as error:  # images not in that store: say so, go on
            click.echo(f"the improvement curve is left out: {error}", err=True)
            curve = []
        shots = best_images(session, store, campaign_id)
    png = out / f"report-{campaign_id}.png"
    text = markdown(campaign_id, rounds, annotators, alpha, png.name, verdict, curve, reliability)
    with (
        atomic_output(png) as partial_png,
        atomic_output(png.with_suffix(".pdf")) as partial_pdf,
        atomic_output(png.with_suffix(".md")) as partial_md,
        atomic_output(png.with_suffix(".html")) as partial_html,
    ):
        draw(rounds, verdict, curve, [partial_png, partial_pdf], f"Campaign {campaign_id}")
        partial_md.write_text(text, encoding="utf-8")
        page = campaign_html(campaign_id, prompt, settings, verdict, curve, rounds, annotators,
                             reliability, alpha, partial_png.read_bytes(), shots)  # fmt: skip
        partial_html.write_text(page, encoding="utf-8")
    return text + f"\nwrote {png.with_suffix('.html')}, {png.name}, .pdf and .md\n"


def best_images(session: Any, store: Any, campaign_id: str) -> list[Any]:
    """Each steering round's best image (its thumbnail where there is one), read from the
    store; a round whose image the store lacks is left out, and said so on stderr."""
    from sqlalchemy import func, select

    from rankloop.commands.report_html import Shot, mime_of
    from rankloop.core.contracts import VERDICT_ROUND
    from service.models import Round

    rows = session.execute(
        select(Round.number, func.coalesce(Round.best_thumb_key, Round.best_key))
        .where(
            Round.campaign_id == campaign_id,
            Round.best_key.is_not(None),
            func.coalesce(Round.kind, "") != VERDICT_ROUND,
        )
        .order_by(Round.number)
    ).all()
    shots = []
    for number, key in rows:
        try:
            shots.append(Shot(number, store.get(key), mime_of(key)))
        except (NotFound, OSError) as error:
            click.echo(f"round {number}'s best image is left out of the strip: {error}", err=True)
    return shots
