"""``rankloop report <study>``: the study's verdict (every campaign's verdict answers pooled,
:func:`rankloop.core.verdict.pool`) and each campaign's, as a forest plot (PNG and PDF), one
self-contained HTML page and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rankloop.commands.errors import atomic_output
from rankloop.commands.report_figure import draw_study
from rankloop.commands.report_html import CampaignLine, study_html
from rankloop.core.verdict import pool, spread


def study_report(sessions: Any, study_id: str, out: Path) -> str:
    """Write report-study-<id>.html, .png, .pdf and .md under ``out``; the Markdown back."""
    from service.models import Study
    from service.studies import campaigns_of
    from service.verdicts import study_verdicts

    with sessions() as session:
        study = session.get(Study, study_id)
        name, settings = study.name, dict(study.settings or {})
        campaigns = campaigns_of(session, study_id)
        each = study_verdicts(session, [c.id for c in campaigns])
        lines = [CampaignLine(c.id, c.prompt, str(c.status), each[c.id]) for c in campaigns]
    pooled, split = pool(each.values()), spread(each.values())
    png = out / f"report-study-{study_id}.png"
    text = "\n".join(
        [
            f"# Study {name or study_id}",
            "",
            f"**The crowd's verdict, every prompt pooled:** {pooled.sentence()}.",
            "",
            f"Per prompt: {split.above} better (interval above 50 %), {split.below} worse, "
            f"{split.undecided} undecided, {split.unanswered} without answers.",
            "",
            f"![verdicts]({png.name})",
            "",
            "| prompt | campaign | answers | verdict | 95 % interval |",
            "|---|---|---|---|---|",
            *(
                f"| {line.prompt} | {line.id} | {line.verdict.n} | {_share(line.verdict.share)} "
                f"| {_span(line.verdict.interval)} |"
                for line in lines
            ),
        ]
    )
    with (
        atomic_output(png) as partial_png,
        atomic_output(png.with_suffix(".pdf")) as partial_pdf,
        atomic_output(png.with_suffix(".md")) as partial_md,
        atomic_output(png.with_suffix(".html")) as partial_html,
    ):
        draw_study(
            [(line.prompt, line.verdict) for line in lines],
            pooled,
            [partial_png, partial_pdf],
            f"Study {name or study_id}: the crowd's verdict per prompt",
        )
        partial_md.write_text(text + "\n", encoding="utf-8")
        page = study_html(study_id, name, settings, pooled, split, lines, partial_png.read_bytes())
        partial_html.write_text(page, encoding="utf-8")
    return text + f"\n\nwrote {png.with_suffix('.html')}, {png.name}, .pdf and .md\n"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _span(interval: tuple[float, float] | None) -> str:
    return "–" if interval is None else f"{100 * interval[0]:.0f}–{100 * interval[1]:.0f} %"


__all__ = ["study_report"]
