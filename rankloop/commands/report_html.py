"""The HTML page of ``rankloop report``: one self-contained file (styles inline, every image a
``data:`` URI, no script, nothing fetched), so it opens offline, mails as one attachment and
prints as it shows. Everything it says comes from :mod:`rankloop.commands.report`'s numbers;
this module only lays them out."""

from __future__ import annotations

import base64
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from rankloop.core.improvement import Strength
from rankloop.core.verdict import Spread, Verdict
from rankloop.core.version import __version__

# The libraries whose versions a reader needs to reproduce the numbers.
LIBRARIES = ("numpy", "scipy", "matplotlib", "SQLAlchemy", "Flask", "torch", "diffusers")
MIME = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg"}

STYLE = """
body{font:15px/1.45 "DejaVu Sans",system-ui,sans-serif;color:#1b1b1b;max-width:72rem;
margin:2rem auto;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #ddd;padding-bottom:.2rem}
.lead{font-size:1.15rem;font-weight:600}.muted{color:#555}
table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.25rem .6rem;text-align:right;
border-bottom:1px solid #eee}th{background:#f5f5f5}td.text,th.text{text-align:left}
figure{margin:0}img.figure{max-width:100%;height:auto;border:1px solid #eee}
.strip{display:flex;flex-wrap:wrap;gap:.5rem}.strip figure{width:8rem;text-align:center}
.strip img{width:8rem;height:8rem;object-fit:cover;border:1px solid #ddd}
.strip figcaption{font-size:.8rem;color:#555}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.85rem}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def mime_of(key: str) -> str:
    return MIME.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def versions() -> dict[str, str]:
    """Python, rankloop and the installed libraries of :data:`LIBRARIES` (absent ones left out)."""
    found = {"python": platform.python_version(), "rankloop": __version__}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    found["platform"] = platform.platform()
    return found


@dataclass
class Shot:
    """One round's best image, for the strip."""

    round: int
    data: bytes
    mime: str


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(pair: tuple[float, float] | None) -> str:
    return "–" if pair is None else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], text: int = 0) -> str:
    """A table; the first ``text`` columns are words (left-aligned), the others numbers."""

    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="text"' if i < text else ""
        return f"<{tag}{cls}>{escape(str(value))}</{tag}>"

    header = "".join(cell("th", i, h) for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, sections: Sequence[str]) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _verdict_section(verdict: Verdict, note: str = "") -> str:
    counts = _table(
        ["prefer delivered", "prefer start", "ties", "share", "95 % Wilson interval",
         "from annotators who did not steer"],
        [[verdict.delivered, verdict.start, verdict.ties, _pct(verdict.share),
          "–" if verdict.interval is None
          else f"{_pct(verdict.interval[0])} – {_pct(verdict.interval[1])}", verdict.fresh]],
    )  # fmt: skip
    return (
        '<section id="verdict"><h2>The crowd\'s verdict</h2>'
        f'<p class="lead">{escape(verdict.sentence())}.</p>{counts}'
        f'<p class="muted">{escape(note)}</p></section>'
    )


def _figure(png: bytes, alt: str) -> str:
    return (
        f'<section id="figure"><h2>Figures</h2><figure><img class="figure" alt="{escape(alt)}" '
        f'src="{data_uri(png, "image/png")}"></figure></section>'
    )


def _settings(settings: Mapping[str, Any]) -> str:
    shown = json.dumps(dict(settings), indent=2, sort_keys=True, default=str)
    software = _table(["software", "version"], list(versions().items()), text=2)
    return (
        f'<section id="settings"><h2>Settings</h2><pre>{escape(shown)}</pre></section>'
        f'<section id="versions"><h2>Software</h2>{software}</section>'
    )


def campaign_html(
    campaign_id: str,
    prompt: str,
    settings: Mapping[str, Any],
    verdict: Verdict,
    curve: Sequence[Strength],
    rounds: Sequence[Any],
    annotators: Mapping[str, Any],
    reliability: Mapping[str, float],
    alpha: float | None,
    figure_png: bytes,
    strip: Sequence[Shot],
) -> str:
    """The campaign's report page (``rounds``/``annotators``: :mod:`~rankloop.commands.report`'s
    rows; ``reliability``: each annotator's one reliability weight, as the console shows it)."""
    curve_rows = [[p.round, _num(p.strength), _num(p.low), _num(p.high)] for p in curve]
    agreement_rows = [
        [r.round, r.rankings, _num(r.kendall_w), _interval(r.w_interval), _num(r.alpha),
         _interval(r.alpha_interval)]
        for r in rounds
    ]  # fmt: skip
    annotator_rows = [
        [a, row.rankings, row.attention_failed,
         _num(sum(row.taus) / len(row.taus) if row.taus else None), _num(reliability.get(a))]
        for a, row in sorted(annotators.items())
    ]  # fmt: skip
    shots = "".join(
        f'<figure><img alt="round {s.round}\'s best image" src="{data_uri(s.data, s.mime)}">'
        f"<figcaption>round {s.round}</figcaption></figure>"
        for s in strip
    )
    sections = [
        f"<h1>Campaign {escape(campaign_id)}</h1>"
        f'<p class="muted">Prompt: {escape(prompt or "–")}</p>',
        _verdict_section(
            verdict,
            "Each answer compares the delivered image with the starting one, side by side in "
            "random order; ties are left out of the share.",
        ),
        _figure(figure_png, "verdict, improvement curve and agreement per round"),
        '<section id="improvement"><h2>Improvement over rounds</h2><p class="muted">Strength '
        "of each round's best image relative to round 0's (scaled Plackett–Luce utilities "
        "chained through the images rounds share), with its 95 % bootstrap interval.</p>"
        + (
            _table(["round", "strength", "low", "high"], curve_rows)
            if curve_rows
            else "<p>No curve: fewer than two closed rounds, or their images were not found.</p>"
        )
        + "</section>",
        '<section id="agreement"><h2>Agreement per round</h2><p class="muted">Over the '
        "candidates (the attention image left out); intervals: 95 % percentile bootstrap over "
        f"the round's rankings. Krippendorff's α pooled over every round: {_num(alpha)}.</p>"
        + _table(
            [
                "round",
                "rankings",
                "Kendall's W",
                "95 % interval",
                "Krippendorff's α",
                "95 % interval",
            ],
            agreement_rows,
        )
        + "</section>",
        '<section id="annotators"><h2>Annotators</h2><p class="muted">Reliability: the weight '
        "the campaign's evidence gives each annotator, pooled over its closed rounds (the "
        "number the console shows).</p>"
        + _table(
            ["annotator", "rankings", "failed attention", "mean τ with consensus", "reliability"],
            annotator_rows,
            text=1,
        )
        + "</section>",
        '<section id="strip"><h2>Best image of every round</h2>'
        + (f'<div class="strip">{shots}</div>' if shots else "<p>No images found.</p>")
        + "</section>",
        _settings(settings),
    ]
    return _page(f"rankloop report · campaign {campaign_id}", sections)


@dataclass
class CampaignLine:
    """A study's campaign, as its report lists it."""

    id: str
    prompt: str
    status: str
    verdict: Verdict


def study_html(
    study_id: str,
    name: str,
    settings: Mapping[str, Any],
    verdict: Verdict,
    spread: Spread,
    campaigns: Sequence[CampaignLine],
    figure_png: bytes,
) -> str:
    """The study's report page: its pooled verdict, and each campaign's."""
    rows = [
        [c.prompt, c.id, c.status, c.verdict.n, _pct(c.verdict.share),
         "–" if c.verdict.interval is None
         else f"{_pct(c.verdict.interval[0])} – {_pct(c.verdict.interval[1])}"]
        for c in campaigns
    ]  # fmt: skip
    split = (
        f"Per prompt: {spread.above} better (interval wholly above 50 %), {spread.below} worse "
        f"(wholly below), {spread.undecided} undecided, {spread.unanswered} without answers."
    )
    sections = [
        f"<h1>Study {escape(name or study_id)}</h1>"
        f'<p class="muted">{len(campaigns)} prompts, one campaign each · id {escape(study_id)}</p>',
        _verdict_section(
            verdict,
            "Every campaign's verdict answers pooled (each answer counts once). " + split,
        ),
        _figure(figure_png, "each campaign's verdict with its interval, and the pooled one"),
        '<section id="campaigns"><h2>Campaigns</h2>'
        + _table(
            ["prompt", "campaign", "status", "answers", "verdict", "95 % Wilson interval"],
            rows,
            text=3,
        )
        + "</section>",
        _settings(settings),
    ]
    return _page(f"rankloop report · study {study_id}", sections)


__all__ = ["CampaignLine", "Shot", "campaign_html", "data_uri", "mime_of", "study_html", "versions"]
