"""``rankloop bench campaign --tail``: the weak tail, and what its campaigns have in common.

Issue 24 saw one campaign in six barely move over HTTP while ``bench campaign``'s worst gained
about half its median. This study widens the crowds the new default is steered by (today's
three, one careless half the time; the same three twice as noisy; and with ``--two-tastes`` a
crowd whose second annotator prefers another taste), attention checks on, over ``--seeds``
campaigns, and reports per objective and crowd the median and 10th percentile improvement
after 10 rounds (target: the 10th percentile at least half the median) and, for the weakest
fifth against the rest, what might explain them: how far the start was from the taste
(``f(x0)``, as a percentile among the campaigns), how much of the gain came in the first
three rounds, the rounds the point moved to a worse one (the consensus got the round wrong),
the rounds whose consensus winner was not the truly best point, the step and the visibility
floor after 10 rounds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import click
import numpy as np

from rankloop.bench.report import format_table
from rankloop.simulation.campaign import run_campaign
from rankloop.simulation.crowd import Crowd, SimulatedAnnotator

AT = 10
WEAK_SHARE = 0.2  # the weakest fifth
TAIL_TARGET = 0.5  # p10 at least half the median


def noisy_crowd(seed: int, k: int, factor: float = 2.0) -> Crowd:
    """Today's three (:func:`rankloop.bench.campaign.make_campaign_crowd`) at ``factor`` times
    their temperatures."""
    return Crowd(
        (
            SimulatedAnnotator("h0", "honest", 0.5 * factor, k=k),
            SimulatedAnnotator("h1", "honest", 0.7 * factor, k=k),
            SimulatedAnnotator("c0", "careless", 0.5 * factor, k=k, carelessness=0.5),
        ),
        seed=seed,
    )


def campaign_features(objective: Any, crowd: Any, seed: int, m: int, k: int) -> dict[str, Any]:
    """One campaign of the new default: its improvement after each round and the features."""
    problem = objective.make(seed)
    records = list(
        run_campaign(
            rounds=AT, method="auto", optimizer_options={"shell": objective.shell},
            m=m, k=k, seed=seed, crowd=crowd, problem=problem,
        )
    )  # fmt: skip
    ratios = [1.0] + [r.f_ratio for r in records]
    last = records[-1].stats
    return {
        "improvement": [1.0 - r.f_ratio for r in records],
        "f0": float(problem.objective(problem.x0)),
        "gain in rounds 1-3": 1.0 - ratios[3],
        "rounds moved to worse": sum(b > a + 1e-12 for a, b in itertools.pairwise(ratios)),
        "rounds winner wrong": sum(not r.top1 for r in records),
        "final step": float(last.get("step", np.nan)),
        "final visible floor": float(last.get("visible_floor", np.nan)),
    }


FEATURES = (
    "start f(x0) percentile",
    "gain in rounds 1-3",
    "rounds moved to worse",
    "rounds winner wrong",
    "final step",
    "final visible floor",
)


def tail_rows(
    label: str, crowd_label: str, runs: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The summary row and the weak-vs-rest rows of one objective and crowd."""
    final = np.array([run["improvement"][AT - 1] for run in runs])
    f0 = np.array([run["f0"] for run in runs])
    for run in runs:  # how far from the taste it started, among these campaigns (100: farthest)
        run["start f(x0) percentile"] = float(100.0 * np.mean(f0 <= run["f0"]))
    median, p10 = float(np.median(final)), float(np.percentile(final, 10))
    summary = {
        "objective": label, "crowd": crowd_label, f"median@{AT}": median, f"p10@{AT}": p10,
        "p10/median": p10 / median if median > 0 else float("nan"),
        "met": bool(median > 0 and p10 >= TAIL_TARGET * median),
    }  # fmt: skip
    weak = np.zeros(len(final), dtype=bool)
    weak[np.argsort(final, kind="stable")[: max(1, round(WEAK_SHARE * len(final)))]] = True
    rows = []
    for feature in FEATURES:
        values = np.array([run[feature] for run in runs], dtype=float)
        rows.append(
            {
                "objective": label,
                "crowd": crowd_label,
                "feature": feature,
                "weak fifth": float(np.nanmean(values[weak])),
                "the rest": float(np.nanmean(values[~weak])),
                "corr with improvement": _corr(values, final),
            }
        )
    return summary, rows


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.std(a[keep]) == 0 or np.std(b[keep]) == 0:
        return float("nan")
    return float(np.corrcoef(a[keep], b[keep])[0, 1])


def tail_study(
    objectives: Sequence[Any],
    crowds: dict[str, Callable[[Any, int], Any]],
    seeds: int,
    m: int,
    k: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Summary rows, feature rows and every campaign's figures, per objective and crowd
    (``crowds[name](objective, seed)`` builds the crowd; None: it does not apply)."""
    summaries, features, runs_out = [], [], {}
    for objective in objectives:
        for name, make in crowds.items():
            if make(objective, 0) is None:
                continue
            runs = [
                campaign_features(objective, make(objective, seed), seed, m, k)
                for seed in range(seeds)
            ]
            summary, rows = tail_rows(objective.label, name, runs)
            summaries.append(summary)
            features += rows
            runs_out[f"{objective.label}/{name}"] = runs
            click.echo(f"  {objective.label}, {name}: done", err=True)
    return summaries, features, runs_out


def print_tail(summaries: list[dict[str, Any]], features: list[dict[str, Any]]) -> None:
    click.echo(
        f"The weak tail: the new default after {AT} rounds; target p10 >= {TAIL_TARGET:g} x median"
    )
    click.echo(format_table(summaries))
    click.echo(f"The weakest {WEAK_SHARE:.0%} against the rest (means):")
    click.echo(format_table(features))


__all__ = ["campaign_features", "noisy_crowd", "print_tail", "tail_rows", "tail_study"]
