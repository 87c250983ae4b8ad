"""The PNG of ``bench campaign``: median and 10th-percentile improvement per round, drawn with
Pillow (no plotting library needed), one panel per objective, one colour per method."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = {
    "new default": (31, 119, 180),
    "today's default": (255, 127, 14),
    "authors' loop": (44, 160, 44),
}
PANEL, MARGIN = 320, 40


def plot_improvements(curves: dict[str, list[list[float]]], path: Path) -> Path:
    """Draw ``curves`` (``"objective/method"`` -> seeds x rounds) to ``path``; return it."""
    from PIL import Image, ImageDraw

    objectives = list(dict.fromkeys(key.split("/", 1)[0] for key in curves))
    width = len(objectives) * (PANEL + MARGIN) + MARGIN
    height = PANEL + 3 * MARGIN
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for col, objective in enumerate(objectives):
        left, top = MARGIN + col * (PANEL + MARGIN), MARGIN
        series = {
            key.split("/", 1)[1]: np.asarray(value)
            for key, value in curves.items()
            if key.split("/", 1)[0] == objective
        }
        rounds = max(v.shape[1] for v in series.values())
        low = min(0.0, min(float(np.percentile(v, 10, axis=0).min()) for v in series.values()))
        high = max(1e-9, max(float(np.median(v, axis=0).max()) for v in series.values()))

        frame = (left, top, rounds, low, high)

        def xy(t: int, y: float, frame: tuple = frame) -> tuple[float, float]:
            left, top, rounds, low, high = frame
            return (
                left + PANEL * t / max(rounds, 1),
                top + PANEL * (1.0 - (y - low) / (high - low)),
            )

        draw.rectangle([left, top, left + PANEL, top + PANEL], outline=(120, 120, 120))
        draw.line([xy(0, 0.0), xy(rounds, 0.0)], fill=(200, 200, 200))
        draw.text((left, 8), objective, fill="black")
        draw.text((left, top + PANEL + 4), f"rounds 0..{rounds}", fill="black")
        draw.text((left - 36, top), f"{high:.2f}", fill="black")
        draw.text((left - 36, top + PANEL - 10), f"{low:.2f}", fill="black")
        for method, values in series.items():
            colour = COLOURS.get(method, (0, 0, 0))
            padded = np.hstack([np.zeros((len(values), 1)), values])  # round 0: no change
            median = np.median(padded, axis=0)
            p10 = np.percentile(padded, 10, axis=0)
            draw.line([xy(t, float(v)) for t, v in enumerate(median)], fill=colour, width=3)
            draw.line([xy(t, float(v)) for t, v in enumerate(p10)], fill=colour, width=1)
    for i, (method, colour) in enumerate(COLOURS.items()):
        draw.text((MARGIN + 300 * i, height - 24), f"{method} (thick: median, thin: p10)",
                  fill=colour)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
