"""The orientation rows of ``rankloop bench consensus``: campaigns that turn upside down.

The "sharp adversary" crowd of issue 23: three honest annotators at different noise, a spammer
and an adversary who reverses rankings as sharply as the best honest annotator, top-k answers,
fresh items every round, without and with attention checks. A campaign is *flipped* when the
default consensus's mean Kendall tau to the truth over its rounds is below 0; beside it, the
known-scale limit (the scaled Plackett–Luce fit told every annotator's true scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rankloop.bench.report import format_table
from rankloop.core.consensus import AnnotatorReliability, aggregate
from rankloop.core.consensus.evidence import parse_rankings
from rankloop.core.consensus.scaled_pl import fit_round
from rankloop.simulation.crowd import SimulatedAnnotator, make_crowd

#: Campaigns of the sharp-adversary crowd per setting by default (the issue's check used 1,000).
FLIP_SEEDS = 100
ORIENTATION_COLUMNS = (
    "setting",
    "campaigns",
    "flips",
    "limit flips",
    "tau mean",
    "known-scale limit",
    "gap to limit",
    "worst campaign",
    "tau rounds 1-5",
)


def tau_to_truth(order: list[int], values: np.ndarray) -> float:
    from scipy.stats import kendalltau

    position = np.empty(len(order))
    position[order] = np.arange(len(order))
    tau = kendalltau(position, values).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def true_scale(annotator: SimulatedAnnotator) -> float:
    """The scale of the scaled Plackett–Luce model that generates this annotator's answers."""
    if annotator.kind == "spammer":
        return 0.0
    sign = -1.0 if annotator.kind == "adversary" else 1.0
    return sign / annotator.temperature


def known_scale_order(
    answers: list, m: int, scales: dict[str, float], known_worst: list[int] | None = None
) -> list[int]:
    """The known-scale limit: the scaled Plackett–Luce fit told every annotator's true scale."""
    parsed = parse_rankings(answers, m)
    fixed = np.array([scales[str(a.annotator)] for a in parsed])
    fit = fit_round(
        parsed, m, fixed, np.ones(len(parsed)), frozenset(known_worst or ()), fixed_scales=fixed
    )
    return [int(i) for i in np.argsort(-fit.utilities, kind="stable")]


def orientation_campaign(
    seed: int,
    rounds: int = 20,
    m: int = 8,
    k: int | None = 3,
    temperature: float = 0.5,
    attention: bool = False,
) -> dict[str, list[float]]:
    """One campaign of the "sharp adversary" crowd (3 honest at different noise, a spammer, an
    adversary as sharp as the best honest annotator), fresh items every round: per-round Kendall
    tau to the truth of the default consensus and of the known-scale limit. With ``attention``
    every round also shows a degraded copy of an item (known worst), as campaigns do."""
    crowd = make_crowd(
        5,
        spammers=1,
        adversaries=1,
        temperature=temperature,
        k=k,
        seed=seed,
        sharp_adversaries=True,
    )
    true_scales = {a.id: true_scale(a) for a in crowd.annotators}
    rng = np.random.default_rng([seed, 17])
    reliability = AnnotatorReliability()
    taus: dict[str, list[float]] = {"auto": [], "known_scale": []}
    worst = [m] if attention else []
    for round_number in range(rounds):
        values = rng.standard_normal(m)
        shown = np.append(values, values.max()) if attention else values
        answers = crowd.rank(shown, round_number, worst)
        consensus = aggregate(answers, len(shown), reliability=reliability, known_worst=worst)
        oracle = known_scale_order(answers, len(shown), true_scales, worst)
        for method, order in (("auto", consensus.order), ("known_scale", oracle)):
            taus[method].append(tau_to_truth([i for i in order if i < m], values))
    return taus


def orientation_study(
    seeds: int, rounds: int, m: int, k: int, temperature: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Flipped campaigns (mean tau to the truth below 0) of the sharp-adversary crowd, without
    and with attention checks, beside the known-scale limit."""
    rows, per_campaign = [], {}
    for attention in (False, True):
        setting = f"sharp adversary, top-{k}" + (", attention checks" if attention else "")
        runs = [orientation_campaign(s, rounds, m, k, temperature, attention) for s in range(seeds)]
        auto = np.array([r["auto"] for r in runs])  # (seeds, rounds)
        limit = np.array([r["known_scale"] for r in runs])
        campaign_tau = auto.mean(axis=1)
        rows.append(
            {
                "part": "orientation",
                "setting": setting,
                "campaigns": seeds,
                "flips": int((campaign_tau < 0).sum()),
                "limit flips": int((limit.mean(axis=1) < 0).sum()),
                "tau mean": float(auto.mean()),
                "known-scale limit": float(limit.mean()),
                "gap to limit": float(limit.mean() - auto.mean()),
                "worst campaign": float(campaign_tau.min()),
                "tau rounds 1-5": float(auto[:, :5].mean()),
            }
        )
        per_campaign[setting] = {
            "flipped_seeds": [int(s) for s in np.nonzero(campaign_tau < 0)[0]],
            "campaign_tau": campaign_tau.tolist(),
        }
    return rows, per_campaign


def orientation_summary(rows: list[dict[str, Any]], gap_target: float) -> dict[str, Any]:
    """Flips and gaps per setting, and whether no campaign flipped and every gap is in target."""
    return {
        "flips": {r["setting"]: r["flips"] for r in rows},
        "gap_to_limit": {r["setting"]: r["gap to limit"] for r in rows},
        "targets_met": all(r["flips"] == 0 and r["gap to limit"] <= gap_target for r in rows),
    }


def orientation_report(
    rows: list[dict[str, Any]], summary: dict[str, Any], rounds: int, gap_target: float
) -> str:
    """The orientation table and its verdict, as printed by the benchmark."""
    campaigns = rows[0]["campaigns"] if rows else 0
    return "\n".join(
        [
            f"Orientation: {campaigns} campaigns x {rounds} rounds of 3 honest annotators, a "
            "spammer and an adversary as sharp as the best honest one; a flip = mean tau to "
            "the truth < 0",
            format_table(rows, ORIENTATION_COLUMNS),
            f"orientation: {sum(summary['flips'].values())} flipped campaigns; no flips and "
            f"within {gap_target} of the known-scale limit: "
            f"{'met' if summary['targets_met'] else 'missed'}",
        ]
    )
