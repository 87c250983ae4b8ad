"""The PNG of ``rankloop bench study``: rankings over time, and the notify latency's spread, for
the study beside the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        times = row.get("timeline") or []
        label = f"{row['mode']} (idle {row['idle_share']:.1%})"
        left.step(times, range(1, len(times) + 1), where="post", label=label)
        latencies = row.get("notify_latencies") or []
        if latencies:
            share = [(n + 1) / len(latencies) for n in range(len(latencies))]
            right.step(latencies, share, where="post",
                       label=f"{row['mode']} (p99 {row['notify_p99_s']:.2f} s)")  # fmt: skip
    left.set(xlabel="seconds since the start", ylabel="rankings stored", title="Rankings")
    right.set(xlabel="round open -> waiting worker told (s)", ylabel="share of (round, worker)",
              title="Notify latency")  # fmt: skip
    right.set_xscale("symlog", linthresh=0.01)
    right.axvline(0.5, color="grey", linestyle=":", label="target p99 0.5 s")
    for axes in (left, right):
        axes.legend(loc="lower right")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
