"""The figure of ``rankloop report``: the crowd's verdict first, the improvement curve with its
interval, then agreement and the optimizer's moves per round, drawn with matplotlib in DejaVu Sans (the font matplotlib ships,
which has every glyph used here: the en dash, the Greek alpha), with axis titles and ticks, as
PNG and PDF for a paper's appendix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankloop.core.errors import InvalidInput
from rankloop.core.improvement import Strength
from rankloop.core.verdict import Verdict

FONT = "DejaVu Sans"
BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#555555"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InvalidInput(
            "the report's figure needs matplotlib: pip install 'rankloop[report]'"
        ) from None
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.family": FONT, "font.size": 10, "axes.titlesize": 11})
    return plt


def _span(rounds: Sequence[Any]) -> str:
    numbers = [r.round for r in rounds]
    return f"rounds {min(numbers)}–{max(numbers)}" if numbers else "no rounds"


def _verdict_panel(ax: Any, verdict: Verdict) -> None:
    ax.set_title("The crowd's verdict: delivered vs starting image")
    ax.set_xlim(0, 100)
    ax.set_xlabel("answers preferring the delivered image (%), with 95 % Wilson interval")
    ax.set_yticks([])
    ax.axvline(50, color=GREY, linestyle="--", linewidth=1)
    ax.text(50, 0.85, " no preference", color=GREY, fontsize=8, va="center")
    if verdict.share is None or verdict.interval is None:
        ax.text(50, 0.5, "no verdict yet", ha="center", va="center", color=GREY)
        ax.set_ylim(0, 1)
        return
    low, high = verdict.interval
    share = 100 * verdict.share
    ax.errorbar([share], [0.5], xerr=[[share - 100 * low], [100 * high - share]], fmt="o",
                color=BLUE, capsize=6, markersize=8, linewidth=2)  # fmt: skip
    ax.text(share, 0.2, f"{share:.0f} % of {verdict.n} ({100 * low:.0f}–{100 * high:.0f} %)",
            ha="center", va="center")  # fmt: skip
    ax.set_ylim(0, 1)


def _series(ax: Any, rounds: Sequence[Any], fields: Sequence[tuple[str, str, str]],
            title: str, ylabel: str, intervals: Sequence[str | None] = ()) -> None:  # fmt: skip
    ax.set_title(title)
    ax.set_xlabel(f"round ({_span(rounds)})")
    ax.set_ylabel(ylabel)
    drawn = False
    for i, (attribute, label, colour) in enumerate(fields):
        points = [(r.round, getattr(r, attribute)) for r in rounds]
        known = [(x, y) for x, y in points if y is not None]
        if known:
            ax.plot(*zip(*known, strict=True), marker="o", color=colour, label=label)
            drawn = True
        spans = intervals[i] if i < len(intervals) else None
        bars = (
            [(r.round, getattr(r, attribute), getattr(r, spans)) for r in rounds] if spans else []
        )
        bars = [(x, y, b) for x, y, b in bars if y is not None and b is not None]
        if bars:  # 95 % bootstrap interval of each round's value
            ax.errorbar([x for x, _, _ in bars], [y for _, y, _ in bars],
                        yerr=[[max(0.0, y - b[0]) for _, y, b in bars],
                              [max(0.0, b[1] - y) for _, y, b in bars]],
                        fmt="none", ecolor=colour, alpha=0.6, capsize=3)  # fmt: skip
    if not drawn:
        ax.text(0.5, 0.5, "no closed rounds", ha="center", va="center", transform=ax.transAxes)
    elif len(fields) > 1:
        ax.legend(frameon=False)
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)


def _improvement_panel(ax: Any, curve: Sequence[Strength]) -> None:
    ax.set_title("Best image's strength relative to round 0")
    ax.set_ylabel("scaled Plackett–Luce utility")
    ax.axhline(0, color=GREY, linewidth=1, linestyle="--")
    if len(curve) < 2:
        ax.set_xlabel("round")
        ax.text(0.5, 0.5, "fewer than two rounds", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
        return
    xs = [p.round for p in curve]
    ax.set_xlabel(f"round (rounds {min(xs)}–{max(xs)})")
    ax.fill_between(xs, [p.low for p in curve], [p.high for p in curve], color=BLUE,
                    alpha=0.2, label="95 % bootstrap interval")  # fmt: skip
    ax.plot(xs, [p.strength for p in curve], marker="o", color=BLUE, label="estimate")
    ax.legend(frameon=False)
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)


def draw(rounds: Sequence[Any], verdict: Verdict, curve: Sequence[Strength],
         paths: Sequence[Path], title: str) -> None:  # fmt: skip
    """Draw the report's figure once and save it to each of ``paths`` (PNG, PDF: by suffix)."""
    plt = _pyplot()
    figure, grid = plt.subplots(3, 2, figsize=(11, 11), layout="constrained")
    verdict_ax, improvement_ax, agreement_ax, moved_ax, step_ax, spare = grid.flat
    figure.suptitle(title)
    _verdict_panel(verdict_ax, verdict)
    _improvement_panel(improvement_ax, curve)
    _series(agreement_ax, rounds,
            [("kendall_w", "Kendall's W", BLUE), ("alpha", "Krippendorff's α (ordinal)", ORANGE)],
            "Agreement per round (95 % bootstrap intervals)", "agreement",
            ("w_interval", "alpha_interval"))  # fmt: skip
    _series(moved_ax, rounds, [("moved", "latent moved", BLUE)],
            "How far the delivered point moved", "latent distance")  # fmt: skip
    _series(step_ax, rounds, [("step", "line-search step", BLUE)],
            "Line-search step", "step length")  # fmt: skip
    spare.axis("off")
    for path in paths:
        # The format from the real suffix (atomic_output's partial names keep it last).
        figure.savefig(path, dpi=150, format=path.suffix.lstrip("."))
    plt.close(figure)


def draw_study(campaigns: Sequence[tuple[str, Verdict]], pooled: Verdict,
               paths: Sequence[Path], title: str) -> None:  # fmt: skip
    """A study's verdicts as a forest plot: each campaign's share with its 95 % Wilson interval
    (``campaigns``: label and verdict), and the pooled share last, saved to each of ``paths``."""
    plt = _pyplot()
    rows = [*campaigns, ("all prompts (pooled)", pooled)]
    figure, ax = plt.subplots(figsize=(10, 1.4 + 0.35 * len(rows)), layout="constrained")
    figure.suptitle(title)
    ax.axvline(50, color=GREY, linestyle="--", linewidth=1)
    ax.set_xlim(-3, 103)  # a share of 0 or 100 % stays whole
    ax.set_xlabel("answers preferring the delivered image (%), 95 % Wilson interval")
    labels = []
    for y, (label, verdict) in enumerate(reversed(rows)):
        short = label if len(label) <= 32 else label[:31] + "…"
        labels.append(f"{short} (n={verdict.n})")
        if verdict.share is None or verdict.interval is None:
            ax.text(50, y, "no answers", ha="center", va="center", color=GREY, fontsize=8)
            continue
        low, high = verdict.interval
        share = 100 * verdict.share
        colour = ORANGE if y == 0 else BLUE
        ax.errorbar([share], [y], xerr=[[share - 100 * low], [100 * high - share]],
                    fmt="D" if y == 0 else "o", color=colour, capsize=4)  # fmt: skip
    ax.set_yticks(range(len(rows)), labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(True, axis="x", alpha=0.3)
    for path in paths:
        figure.savefig(path, dpi=150, format=path.suffix.lstrip("."))
    plt.close(figure)


__all__ = ["FONT", "draw", "draw_study"]
