"""``rankloop bench consensus``: consensus quality, and its end effect on the optimizer.

Part 1, quality. 20-round campaigns with 5 simulated annotators (3 honest with Plackett–Luce
noise, 1 spammer, 1 adversary), m = 8 items per round with hidden values, full rankings and a
top-k case. Each method's consensus is scored against the hidden truth of every round by
Kendall tau and top-1 hit. rankloop "auto" learns annotator reliability online, round by round;
crowd-kit ``NoisyBradleyTerry`` is fitted once on the pairwise comparisons of the *whole*
campaign (all 20 rounds, items of different rounds kept apart, workers shared, left/right
shuffled so its position-bias term learns nothing spurious): it sees every round's data in
hindsight, the most favourable setup it can have.

Orientation. The "sharp adversary" crowd (3 honest annotators at different noise, a spammer, an
adversary reversing as sharply as the best honest one), top-k answers, fresh items every round,
without and with attention checks: how many campaigns (``--flip-seeds``) the default consensus
spends upside down (mean tau to the truth below 0), beside the known-scale limit
(:mod:`.consensus_orientation`; `--orientation-only` runs these rows alone).

Part 2, end effect. The simulated crowd steers ``RankSGD`` on a synthetic objective for N
rounds; f/f0 at the end, per consensus method, with the optimizer told either the consensus
order (``tell(order)``) or its weighted pairwise matrix (``tell(preferences=W)``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import click
import numpy as np
from scipy.stats import wilcoxon

from rankloop.bench.consensus_orientation import (
    FLIP_SEEDS,
    known_scale_order,
    orientation_report,
    orientation_study,
    orientation_summary,
    tau_to_truth,
    true_scale,
)
from rankloop.bench.report import format_table, save_results
from rankloop.core.consensus import AnnotatorReliability, aggregate
from rankloop.core.contracts import FEEDS, Feed
from rankloop.simulation.campaign import run_campaign
from rankloop.simulation.crowd import SimulatedAnnotator, make_crowd

QUALITY_METHODS = (
    "auto",
    "weighted_kemeny",
    "borda",
    "plackett_luce",
    "noisy_bt",
    "copeland",
    "kemeny",
    "known_scale",
)
LABELS = {
    "auto": "rankloop auto",
    "weighted_kemeny": "weighted Kemeny (old auto)",
    "known_scale": "known-scale PL (limit)",
    "borda": "Borda",
    "plackett_luce": "choix PL-MLE",
    "noisy_bt": "crowd-kit NoisyBT",
    "copeland": "Copeland",
    "kemeny": "Kemeny",
}
BASELINES = ("borda", "plackett_luce", "noisy_bt")
#: The issue's target: the default consensus within this much mean tau of the known-scale limit.
LIMIT_GAP_TARGET = 0.03


def _noisy_bt_orders(campaign: list[tuple[int, list]], m: int, seed: int) -> list[list[int]]:
    """Fit crowd-kit NoisyBradleyTerry once on every round's pairwise comparisons."""
    import pandas as pd
    from crowdkit.aggregation import NoisyBradleyTerry

    from rankloop.core.consensus import pairwise_matrix, parse_ranking

    rng = np.random.default_rng([seed, 4242])
    rows = []
    for round_number, answers in campaign:
        for annotator, order in answers:
            groups, shown = parse_ranking(order, m, annotator)
            wins = pairwise_matrix(groups, shown, m)
            for a, b in zip(*np.nonzero(wins), strict=True):
                left, right = (a, b) if rng.random() < 0.5 else (b, a)
                rows.append(
                    (
                        annotator,
                        f"{round_number}:{left}",
                        f"{round_number}:{right}",
                        f"{round_number}:{a}",
                    )
                )
    data = pd.DataFrame(rows, columns=["worker", "left", "right", "label"])
    # crowd-kit's hand-written gradient overflows now and then on well-separated items; its
    # L-BFGS copes (the scores stay finite), so the floating-point warnings are only noise.
    with np.errstate(over="ignore", invalid="ignore"):
        scores = NoisyBradleyTerry(n_iter=100, random_state=seed).fit_predict(data)
    orders = []
    for round_number, _ in campaign:
        round_scores = np.array(
            [scores.get(f"{round_number}:{i}", 0.0) for i in range(m)], dtype=float
        )
        orders.append([int(i) for i in np.argsort(-round_scores, kind="stable")])
    return orders


def quality_campaign(
    seed: int, rounds: int = 20, m: int = 8, k: int | None = None, temperature: float = 0.5
) -> dict[str, dict[str, list[float]]]:
    """One campaign: per method, per-round Kendall tau and top-1 hits to the hidden truth."""
    crowd = make_crowd(5, spammers=1, adversaries=1, temperature=temperature, k=k, seed=seed)
    true_scales = {a.id: true_scale(a) for a in crowd.annotators}
    rng = np.random.default_rng([seed, 17])
    reliability = {method: AnnotatorReliability() for method in QUALITY_METHODS}
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    campaign, truths = [], []
    for round_number in range(rounds):
        values = rng.standard_normal(m)
        answers = crowd.rank(values, round_number)
        campaign.append((round_number, answers))
        truths.append(values)
        oracle = known_scale_order(answers, m, true_scales)
        results["known_scale"]["tau"].append(tau_to_truth(oracle, values))
        results["known_scale"]["top1"].append(float(oracle[0] == int(np.argmin(values))))
        for method in QUALITY_METHODS:
            if method in ("noisy_bt", "known_scale"):
                continue
            consensus = aggregate(answers, m, method=method, reliability=reliability[method])
            order = list(consensus.order)
            results[method]["tau"].append(tau_to_truth(order, values))
            results[method]["top1"].append(float(order[0] == int(np.argmin(values))))
    for order, values in zip(_noisy_bt_orders(campaign, m, seed), truths, strict=True):
        results["noisy_bt"]["tau"].append(tau_to_truth(order, values))
        results["noisy_bt"]["top1"].append(float(order[0] == int(np.argmin(values))))
    return results


def end_effect(
    seed: int,
    method: str,
    feed: str,
    rounds: int,
    objective: str,
    dim: int,
    temperature: float,
    k: int | None = None,
) -> float:
    """f/f0 after ``rounds`` of a simulated campaign (crowd and problem fixed by ``seed``)."""
    crowd = make_crowd(
        5, spammers=1, adversaries=1, temperature=temperature, k=k, dropout=0.1, seed=seed
    )
    records = list(run_campaign(objective, dim, rounds, crowd, method=method, feed=feed, seed=seed))
    return records[-1].f_ratio


def feed_study(
    seeds: int, rounds: int, objective: str, dim: int, temperature: float, k: int | None
) -> dict[str, Any]:
    """Paired comparison of ``tell(preferences=W)`` and ``tell(order)`` under "auto"."""
    ratios: dict[str, np.ndarray] = {
        feed: np.array(
            [
                end_effect(s, "auto", feed, rounds, objective, dim, temperature, k)
                for s in range(seeds)
            ]
        )
        for feed in FEEDS
    }
    paired = ratios[Feed.PAIRWISE] / ratios[Feed.ORDER]
    return {
        "order median": float(np.median(ratios[Feed.ORDER])),
        "pairwise median": float(np.median(ratios[Feed.PAIRWISE])),
        "geo-mean pref/order": float(np.exp(np.mean(np.log(paired)))),
        "pref wins": float(np.mean(paired < 1.0)),
        "log ratios": np.log(paired).tolist(),
    }


def _orientation_only(
    flip_seeds: int,
    rounds: int,
    m: int,
    topk: int,
    temperature: float,
    out: str,
    quick: bool,
    started: float,
) -> None:
    rows, per_campaign = orientation_study(flip_seeds, rounds, m, topk, temperature)
    summary = {"orientation": orientation_summary(rows, LIMIT_GAP_TARGET)}
    click.echo(orientation_report(rows, summary["orientation"], rounds, LIMIT_GAP_TARGET))
    path = save_results(
        out,
        "consensus",
        rows,
        per_campaign=per_campaign,
        summary=summary,
        rounds=rounds,
        m=m,
        topk=topk,
        temperature=temperature,
        flip_seeds=flip_seeds,
        orientation_only=True,
        quick=quick,
        seconds=time.perf_counter() - started,
    )
    click.echo(f"saved {path} ({time.perf_counter() - started:.0f} s)")


def _perceptual_part(rows: list[dict[str, Any]], seeds: int, temperature: float, k: int) -> None:
    """The perceptual rows (:func:`rankloop.bench.perceptual.consensus_rows`), printed and
    added to ``rows``: three honest annotators of the given temperature, top-``k``."""
    from rankloop.bench.perceptual import consensus_rows
    from rankloop.simulation.crowd import Crowd

    def crowd(seed: int) -> Crowd:
        members = [
            SimulatedAnnotator(f"h{i}", "honest", temperature * factor, k=k)
            for i, factor in enumerate((1.0, 1.4, 0.8))
        ]
        return Crowd(tuple(members), seed=seed)

    found = consensus_rows(seeds, crowd)
    rows.extend(found)
    click.echo()
    click.echo(
        f"Under a crowd that sees like people: one round of 8 cppn candidates per seed and taste "
        f"({seeds} seeds x 3 tastes), perturbations of the given RMS pixel change, 3 honest "
        f"annotators top-{k}; pairs above = share at ΔE00 >= 2.3 at the tile size"
    )
    click.echo(
        format_table(
            found, ["setting", "method", "tau mean", "top-1 hit", "pairs above", "agreement"]
        )
    )


@click.command("consensus")
@click.option("--seeds", default=10, show_default=True, help="Campaigns per setting.")
@click.option("--rounds", default=20, show_default=True, help="Rounds per quality campaign.")
@click.option("--m", default=8, show_default=True, help="Items per round.")
@click.option("--topk", default=3, show_default=True, help="k of the top-k setting.")
@click.option("--temperature", default=0.5, show_default=True, help="Honest annotators' noise.")
@click.option(
    "--flip-seeds",
    default=FLIP_SEEDS,
    show_default=True,
    help="Campaigns of the sharp-adversary crowd, counted for flips (each setting).",
)
@click.option("--end-rounds", default=40, show_default=True, help="Rounds of each end-effect run.")
@click.option("--end-seeds", default=8, show_default=True, help="Seeds of the end-effect runs.")
@click.option("--objective", default="projected", show_default=True)
@click.option("--dim", default=64, show_default=True)
@click.option(
    "--orientation-only",
    is_flag=True,
    help="Only the orientation rows (flipped campaigns), e.g. with --flip-seeds 1000.",
)
@click.option("--quick", is_flag=True, help="Smoke run: 2 seeds, few rounds.")
@click.option(
    "--perceptual",
    is_flag=True,
    help="Also: one round of cppn candidates per size of perturbation, ranked by the "
    "pixel-exact crowd and by crowds that see phone or desktop tiles (rankloop.bench.perceptual).",
)
@click.option("--out", default="bench-results/consensus.json", show_default=True)
def consensus_command(
    seeds: int,
    rounds: int,
    m: int,
    topk: int,
    temperature: float,
    flip_seeds: int,
    end_rounds: int,
    end_seeds: int,
    objective: str,
    dim: int,
    orientation_only: bool,
    quick: bool,
    perceptual: bool,
    out: str,
) -> None:
    """Consensus methods side by side: tau/top-1 to the hidden truth, and f/f0 they lead to."""
    if quick:
        seeds, rounds, end_rounds, end_seeds, dim, flip_seeds = 2, 6, 8, 1, 16, 4
    started = time.perf_counter()
    if orientation_only:
        _orientation_only(flip_seeds, rounds, m, topk, temperature, out, quick, started)
        return
    rows: list[dict[str, Any]] = []
    per_round: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for setting, k in (("full", None), (f"top-{topk}", topk)):
        pooled: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
        for seed in range(seeds):
            for method, metrics in quality_campaign(seed, rounds, m, k, temperature).items():
                for metric, values in metrics.items():
                    pooled[method][metric].append(values)
        means = {method: float(np.mean(pooled[method]["tau"])) for method in QUALITY_METHODS}
        best_baseline = max(BASELINES, key=lambda b: means[b])
        for method in QUALITY_METHODS:
            tau = np.array(pooled[method]["tau"])  # (seeds, rounds)
            top1 = np.array(pooled[method]["top1"])
            rows.append(
                {
                    "part": "quality",
                    "setting": setting,
                    "method": LABELS[method],
                    "tau mean": float(tau.mean()),
                    "tau rounds 1-5": float(tau[:, :5].mean()),
                    "tau last 5": float(tau[:, -5:].mean()),
                    "top-1 hit": float(top1.mean()),
                    "vs best baseline": float(tau.mean() - means[best_baseline]),
                }
            )
            per_round[f"{setting}/{method}"] = {
                "tau": tau.mean(axis=0).tolist(),
                "top1": top1.mean(axis=0).tolist(),
            }
        summary[setting] = {
            "best_baseline": LABELS[best_baseline],
            "auto_minus_best_baseline": means["auto"] - means[best_baseline],
            "known_scale_limit": means["known_scale"],
            "auto_gap_to_limit": means["known_scale"] - means["auto"],
            "old_auto_gap_to_limit": means["known_scale"] - means["weighted_kemeny"],
            "limit_target_met": bool(means["known_scale"] - means["auto"] <= LIMIT_GAP_TARGET),
        }

    orientation_rows, per_campaign = orientation_study(flip_seeds, rounds, m, topk, temperature)
    rows += orientation_rows
    summary["orientation"] = orientation_summary(orientation_rows, LIMIT_GAP_TARGET)

    end_methods = ("auto", "borda", "plackett_luce", "kemeny")
    for method in end_methods:
        for feed in FEEDS:
            values = [
                end_effect(seed, method, feed, end_rounds, objective, dim, temperature)
                for seed in range(end_seeds)
            ]
            rows.append(
                {
                    "part": "end effect",
                    "setting": f"tell {feed}",
                    "method": LABELS[method],
                    "f/f0 median": float(np.median(values)),
                    "f/f0 mean": float(np.mean(values)),
                }
            )
    feed_settings = [(temperature, None), (temperature, topk), (2 * temperature, None)]
    if not quick:
        feed_settings += [(2 * temperature, topk), (4 * temperature, None)]
    for feed_temperature, k in feed_settings:
        rows.append(
            {
                "part": "feed",
                "setting": f"T={feed_temperature:g}, k={k or 'all'}",
                "method": LABELS["auto"],
                **feed_study(end_seeds, end_rounds, objective, dim, feed_temperature, k),
            }
        )
    feed_rows = [r for r in rows if r["part"] == "feed"]
    # One verdict from every paired run of every setting: the mean log ratio, how often
    # preferences won, and a Wilcoxon signed-rank test (f/f0 spans orders of magnitude, so
    # the comparison is made on logs, paired by seed).
    log_ratios = np.concatenate([r.pop("log ratios") for r in feed_rows])
    p_value = (
        float(wilcoxon(log_ratios).pvalue) if len(log_ratios) > 1 and np.any(log_ratios) else 1.0
    )
    summary["feed"] = {
        "winner": (Feed.PAIRWISE if log_ratios.mean() < 0 else Feed.ORDER).value,
        "pooled_runs": len(log_ratios),
        "pooled_geo_mean_pref_over_order": float(np.exp(log_ratios.mean())),
        "pooled_pref_wins": float(np.mean(log_ratios < 0)),
        "wilcoxon_p": p_value,
        "geo-mean pref/order per setting": {
            r["setting"]: r["geo-mean pref/order"] for r in feed_rows
        },
    }

    quality_columns = [
        "setting",
        "method",
        "tau mean",
        "tau rounds 1-5",
        "tau last 5",
        "top-1 hit",
        "vs best baseline",
    ]
    click.echo(
        f"Consensus quality: {seeds} campaigns x {rounds} rounds, m={m}, "
        "5 annotators (3 honest, 1 spammer, 1 adversary)"
    )
    click.echo(format_table([r for r in rows if r["part"] == "quality"], quality_columns))
    click.echo()
    click.echo(
        orientation_report(orientation_rows, summary["orientation"], rounds, LIMIT_GAP_TARGET)
    )
    click.echo()
    click.echo(
        f"End effect: f/f0 after {end_rounds} rounds on {objective} d={dim}, "
        f"{end_seeds} seeds, temperature {temperature} (lower is better). "
        "With tell(preferences) the unweighted methods share one pairwise matrix, so they coincide."
    )
    click.echo(
        format_table(
            [r for r in rows if r["part"] == "end effect"],
            ["setting", "method", "f/f0 median", "f/f0 mean"],
        )
    )
    click.echo()
    click.echo("Feeding the optimizer (rankloop auto): tell(preferences=c.pairwise) vs tell(order)")
    click.echo(
        format_table(
            feed_rows,
            ["setting", "order median", "pairwise median", "geo-mean pref/order", "pref wins"],
        )
    )
    click.echo()
    for setting in ("full", f"top-{topk}"):
        click.echo(
            f"{setting}: rankloop auto mean tau minus best baseline "
            f"({summary[setting]['best_baseline']}) = "
            f"{summary[setting]['auto_minus_best_baseline']:+.3f}; known-scale limit "
            f"{summary[setting]['known_scale_limit']:.3f}, auto {summary[setting]['auto_gap_to_limit']:.3f} "
            f"below it (old auto {summary[setting]['old_auto_gap_to_limit']:.3f}; target <= "
            f"{LIMIT_GAP_TARGET}: {'met' if summary[setting]['limit_target_met'] else 'missed'})"
        )
    verdict = summary["feed"]
    click.echo(
        f"better feed with noisy crowds: tell({verdict['winner']}); over "
        f"{verdict['pooled_runs']} paired runs f/f0 pref/order geo-mean "
        f"{verdict['pooled_geo_mean_pref_over_order']:.3f}, preferences lower in "
        f"{verdict['pooled_pref_wins']:.0%}, Wilcoxon p = {verdict['wilcoxon_p']:.2g}"
    )
    if perceptual:
        _perceptual_part(rows, seeds, temperature, topk)
    path = save_results(
        out,
        "consensus",
        rows,
        per_round=per_round,
        per_campaign=per_campaign,
        summary=summary,
        seeds=seeds,
        rounds=rounds,
        m=m,
        topk=topk,
        temperature=temperature,
        flip_seeds=flip_seeds,
        end_rounds=end_rounds,
        end_seeds=end_seeds,
        objective=objective,
        dim=dim,
        quick=quick,
        seconds=time.perf_counter() - started,
    )
    click.echo(f"saved {path} ({time.perf_counter() - started:.0f} s)")
