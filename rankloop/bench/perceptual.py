"""The campaign and consensus benchmarks under a crowd that sees like people.

``rankloop bench campaign --crowd perceptual`` and ``rankloop bench consensus --perceptual``
call into this module: the same campaigns (or rounds) judged by the pixel-exact crowd of
:mod:`rankloop.simulation.crowd` and by its perceptual twin
(:mod:`rankloop.simulation.perceptual_crowd`), which sees each candidate as a tile of the task
page on a phone or a desktop (:mod:`rankloop.simulation.perception`) and ranks only what it can
tell apart. Reported beside each other: the delivered image's improvement, the share of the
round's candidate pairs at least a just-noticeable difference apart (ΔE00 >= 2.3 at the tile
size) and the crowd's chance-corrected agreement (what the optimizer's visible floor follows,
:mod:`rankloop.core.optimizer.visibility`).

Targets (issue 25), under the perceptual crowd at phone tile size: the median improvement after
10 rounds at least 80 % of the pixel-exact crowd's, no campaign (of 20 seeds) without
improvement, and at least 60 % of the candidate pairs of a round above the threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rankloop.core.consensus import AnnotatorReliability, aggregate
from rankloop.core.optimizer.visibility import chance_corrected
from rankloop.simulation.campaign import run_campaign
from rankloop.simulation.crowd import Crowd
from rankloop.simulation.objectives import CPPN_TASTES, make_cppn_problem
from rankloop.simulation.perception import DESKTOP, PHONE, VIEWINGS
from rankloop.simulation.perceptual_crowd import perceptual_twin

#: Crowds compared: the pixel-exact one, and its perceptual twin at each tile size.
CROWDS = ("pixel-exact", *(f"perceptual {v}" for v in VIEWINGS))
GAIN_SHARE_TARGET = 0.8  # of the pixel-exact crowd's median improvement after 10 rounds
PAIRS_ABOVE_TARGET = 0.6  # share of candidate pairs per round above the threshold
TARGET_ROUND = 10


def crowd_for(label: str, exact: Crowd) -> Any:
    """The crowd called ``label`` (:data:`CROWDS`), made from the pixel-exact ``exact``."""
    if label == "pixel-exact":
        return exact
    return perceptual_twin(exact, VIEWINGS[label.split()[-1]])


def campaign_figures(
    taste: str,
    crowd_label: str,
    seed: int,
    rounds: int,
    make_crowd: Callable[[int], Crowd],
    options: dict[str, Any] | None = None,
) -> dict[str, list[float]]:
    """One campaign of the new default (verified ``RankSGD``, ``auto`` consensus) on a cppn
    taste: per round the improvement ``1 - f/f0``, the share of candidate pairs above the
    threshold (perceptual crowds only), the chance-corrected agreement and the visible floor."""
    problem = make_cppn_problem(taste, seed)
    crowd = crowd_for(crowd_label, make_crowd(seed))
    records = run_campaign(
        rounds=rounds,
        crowd=crowd,
        problem=problem,
        method="auto",
        m=8,
        k=3,
        seed=seed,
        optimizer_options=options,
    )
    out: dict[str, list[float]] = {"gain": [], "pairs_above": [], "agreement": [], "floor": []}
    for record in records:
        rho = chance_corrected(record.agreement, record.answers)
        out["gain"].append(1.0 - record.f_ratio)
        out["pairs_above"].append(record.perception.get("pairs_above", float("nan")))
        out["agreement"].append(float("nan") if rho is None else rho)
        out["floor"].append(float(record.stats.get("visible_floor", float("nan"))))
    return out


def campaign_rows(
    seeds: int, rounds: int, make_crowd: Callable[[int], Crowd], follow: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Rows (per taste and crowd), curves and the verdicts on the issue's targets."""
    at = min(TARGET_ROUND, rounds) - 1
    rows, curves, verdicts = [], {}, {}
    options = {"follow_agreement": follow}
    for taste in CPPN_TASTES:
        medians = {}
        for label in CROWDS:
            runs = [
                campaign_figures(taste, label, seed, rounds, make_crowd, options)
                for seed in range(seeds)
            ]
            gains = np.array([r["gain"] for r in runs])
            above = np.array([r["pairs_above"] for r in runs])
            agreement = np.array([r["agreement"] for r in runs])
            floors = np.array([r["floor"] for r in runs])
            curves[f"cppn {taste}/{label}"] = {
                "gain": gains.tolist(),
                "pairs_above": above.tolist(),
                "agreement": agreement.tolist(),
                "visible_floor": floors.tolist(),
            }
            perceptual = label != "pixel-exact"
            rows.append(
                {
                    "objective": f"cppn {taste}",
                    "crowd": label,
                    f"median@{at + 1}": float(np.median(gains[:, at])),
                    f"worst@{at + 1}": float(gains[:, at].min()),
                    f"not improved@{at + 1}": float(np.mean(gains[:, at] <= 0.0)),
                    f"median@{rounds}": float(np.median(gains[:, -1])),
                    "pairs above": float(np.mean(above)) if perceptual else None,
                    "worst round pairs above": float(np.min(above)) if perceptual else None,
                    "agreement": float(np.nanmean(agreement)),
                    "floor at end": float(np.median(floors[:, -1])),
                }
            )
            medians[label] = gains[:, at]
            if label == f"perceptual {PHONE.name}":
                phone_above = above
        exact = float(np.median(medians["pixel-exact"]))
        phone = float(np.median(medians[f"perceptual {PHONE.name}"]))
        per_round = np.mean(phone_above, axis=0)
        verdicts[f"cppn {taste}"] = {
            "phone_over_exact_median": phone / exact if exact > 0 else float("nan"),
            "gain_target_met": bool(phone >= GAIN_SHARE_TARGET * exact),
            "phone_campaigns_not_improved": int(np.sum(medians[f"perceptual {PHONE.name}"] <= 0)),
            "all_improved_met": bool(np.all(medians[f"perceptual {PHONE.name}"] > 0)),
            "phone_pairs_above_per_round": per_round.tolist(),
            "phone_pairs_above_min_round": float(per_round.min()),
            "pairs_above_target_met": bool(per_round.min() >= PAIRS_ABOVE_TARGET),
            "desktop_median": float(np.median(medians[f"perceptual {DESKTOP.name}"])),
        }
    return rows, curves, verdicts


def verdict_lines(verdicts: dict[str, Any]) -> list[str]:
    """One line per objective: the three targets, met or missed, with the figures."""
    lines = []
    for label, v in verdicts.items():
        lines.append(
            f"{label}: phone/pixel-exact median@{TARGET_ROUND} = "
            f"{v['phone_over_exact_median']:.2f} (target >= {GAIN_SHARE_TARGET}: "
            f"{'met' if v['gain_target_met'] else 'missed'}); phone campaigns not improved: "
            f"{v['phone_campaigns_not_improved']} ({'met' if v['all_improved_met'] else 'missed'}); "
            f"pairs above threshold, worst round's mean {v['phone_pairs_above_min_round']:.2f} "
            f"(target >= {PAIRS_ABOVE_TARGET}: {'met' if v['pairs_above_target_met'] else 'missed'})"
        )
    return lines


def report_campaigns(
    seeds: int, rounds: int, make_crowd: Callable[[int], Crowd], follow: bool = True
) -> dict[str, Any]:
    """Run :func:`campaign_rows`, print its table and verdicts; return them for the JSON."""
    import click

    from rankloop.bench.report import format_table

    rows, curves, verdicts = campaign_rows(seeds, rounds, make_crowd, follow)
    click.echo(
        f"Under a crowd that sees like people: new default on cppn, {seeds} campaigns each, "
        f"m=8, top-3, the same 3 annotators seeing tiles of {PHONE.tile_px} px (phone) or "
        f"{DESKTOP.tile_px} px (desktop); pairs above = share of a round's candidate pairs at "
        "ΔE00 >= 2.3; agreement = chance-corrected (0: chance)"
        + ("" if follow else "; the visible floor fixed (follow_agreement off)")
    )
    click.echo(format_table(rows))
    for line in verdict_lines(verdicts):
        click.echo(line)
    return {"rows": rows, "curves": curves, "verdicts": verdicts, "follow_agreement": follow}


# -- consensus quality on rounds of images -------------------------------------------------------
#: Sizes of a round's perturbations (RMS pixel change from the round's centre, 0..1): below,
#: around and above the optimizer's visibility band floor (0.03).
PERTURBATION_SIZES = (0.005, 0.01, 0.03, 0.06)


def _round_points(problem: Any, seed: int, size: float, m: int) -> np.ndarray:
    """``m`` points around a random latent whose renders differ from its own by ``size`` RMS."""
    rng = np.random.default_rng([seed, 25])
    centre = problem.x0 + 0.5 * rng.standard_normal(problem.dim)
    directions = rng.standard_normal((m, problem.dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    probe = centre + 0.5 * directions
    images = problem.render(np.vstack([probe, centre[None]]))  # a cppn problem renders
    base = images[-1] / 255.0
    rms = np.array([np.sqrt(np.mean((i / 255.0 - base) ** 2)) / 0.5 for i in images[:-1]])
    effect = float(np.median(rms[rms > 0])) if np.any(rms > 0) else 1.0
    return centre + (size / effect) * directions


def _tau(order: list[int], values: np.ndarray) -> float:
    from scipy.stats import kendalltau

    position = np.empty(len(order))
    position[order] = np.arange(len(order))
    tau = kendalltau(position, values).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def consensus_rows(seeds: int, make_crowd: Callable[[int], Crowd], m: int = 8) -> list[dict]:
    """The ``auto`` consensus of one round of cppn candidates against the hidden taste, per
    perturbation size and crowd: Kendall tau, top-1 hit, pairs above the threshold, agreement."""
    rows = []
    for size in PERTURBATION_SIZES:
        for label in CROWDS:
            taus, hits, above, agreement = [], [], [], []
            for taste in CPPN_TASTES:
                for seed in range(seeds):
                    problem = make_cppn_problem(taste, seed)
                    points = _round_points(problem, seed, size, m)
                    values = np.asarray(problem.objective(points))
                    crowd = crowd_for(label, make_crowd(seed))
                    if label == "pixel-exact":
                        answers = crowd.rank(values, seed)
                    else:
                        assert problem.render is not None  # a cppn problem renders
                        seen = crowd.see(problem.render(points, crowd.render_size))
                        above.append(crowd.figures(seen, m)["pairs_above"])
                        answers = crowd.rank(values, seed, seen=seen)
                    consensus = aggregate(
                        answers, m, method="auto", reliability=AnnotatorReliability()
                    )
                    order = [int(i) for i in consensus.order]
                    taus.append(_tau(order, values))
                    hits.append(float(order[0] == int(np.argmin(values))))
                    rho = chance_corrected(consensus.agreement, len(answers))
                    agreement.append(float("nan") if rho is None else rho)
            rows.append(
                {
                    "part": "perceptual",
                    "setting": f"RMS {size:g}",
                    "method": label,
                    "tau mean": float(np.mean(taus)),
                    "top-1 hit": float(np.mean(hits)),
                    "pairs above": float(np.mean(above)) if above else None,
                    "agreement": float(np.nanmean(agreement)),
                }
            )
    return rows


__all__ = [
    "CROWDS",
    "GAIN_SHARE_TARGET",
    "PAIRS_ABOVE_TARGET",
    "PERTURBATION_SIZES",
    "campaign_figures",
    "campaign_rows",
    "consensus_rows",
    "crowd_for",
    "report_campaigns",
    "verdict_lines",
]
