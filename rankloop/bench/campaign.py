"""``rankloop bench campaign``: what a campaign owner gets, the delivered image round by round.

A simulated crowd (Plackett–Luce noise; three annotators sharing one taste, one of them careless
half the time; ``--adversary`` adds one who answers backwards) gives top-3 answers over rounds
of m = 8 candidates plus the attention image, as in a campaign created over the HTTP API. It
steers

- ``cppn`` toward three tastes (:data:`rankloop.simulation.objectives.CPPN_TASTES`: warm colour, contrast,
  mirror-symmetric structure), the images rendered and scored at 32 x 32; and
- the d = 16,384 latent objective of ``bench optimizer`` (a quadratic of a 10-dimensional
  projection of a diffusion-sized latent, points kept on the Gaussian shell),

over ``--seeds`` campaigns each, with three methods:

``new default``
    ``RankSGD()`` (the verified schedule) with the ``auto`` consensus (scaled Plackett–Luce);
``today's default``
    the campaign settings before issue 12: the two-phase loop with ``sgd_moves = False`` and the
    reliability-weighted Kemeny consensus;
``authors' loop``
    a replica of the authors' public notebook loop (flaws included, as in ``bench optimizer``),
    told the consensus order, its fixed step and radius picked from a small grid on separate
    tuning seeds.

The delivered image is the optimizer's current point (``current_best_image_url``); its
improvement after t rounds is ``1 - f(x_t) / f(x_0)`` (1: ideal, 0: unchanged, negative: worse).
Reported per objective and method: median, 10th percentile and worst improvement after 5, 10
and 20 rounds, and the share of campaigns that did not improve. Targets (issue 12): median
after 10 rounds at least twice the authors' loop's, and no campaign without improvement after
10 rounds.

With ``--quorum fixed:3,fixed:5,adaptive:2-5`` it compares quorum rules instead (the new default
only): improvement, rankings spent and simulated round wall time, with and without straggler
offers (:mod:`rankloop.bench.campaign_quorum`); with ``--tail`` it studies the weak tail of
the new default under wider crowds (:mod:`rankloop.bench.campaign_tail`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
import numpy as np
from click.core import ParameterSource

from rankloop.bench.campaign_plot import plot_improvements
from rankloop.bench.campaign_quorum import run_quorum_bench, two_taste_objectives
from rankloop.bench.optimizer import AuthorsLoop
from rankloop.bench.report import format_table, save_results
from rankloop.simulation.campaign import run_campaign
from rankloop.simulation.crowd import Crowd, SimulatedAnnotator
from rankloop.simulation.objectives import CPPN_TASTES, Problem, make_cppn_problem, make_problem

M, K, LATENT_DIM = 8, 3, 16_384
CHECKPOINTS = (5, 10, 20)
METHODS = ("new default", "today's default", "authors' loop")
AUTHORS_GRID = tuple(itertools.product((2.0, 8.0, 32.0), (0.03, 0.3)))
TUNING_SEED = 10_000  # tuning seeds are 10_000 + i, never an evaluation seed


@dataclass(frozen=True)
class Objective:
    label: str
    make: Callable[[int], Problem]
    shell: bool  # a diffusion latent: points stay on the Gaussian shell
    # A crowd of two tastes (rankloop.simulation.tastes): seed -> each group's taste; the
    # problem ``make`` builds is then their mix.
    tastes: Callable[[int], tuple[Callable[..., Any], ...]] | None = None


def _latent_problem(seed: int) -> Problem:
    problem = make_problem("projected", LATENT_DIM, seed=seed)
    x0 = problem.x0 * (np.sqrt(LATENT_DIM) / np.linalg.norm(problem.x0))  # on the shell
    return Problem("latent d=16384", problem.objective, x0)


def _cppn(taste: str) -> Callable[[int], Problem]:
    def make(seed: int) -> Problem:
        return make_cppn_problem(taste, seed)

    return make


def objectives() -> list[Objective]:
    cppn = [Objective(f"cppn {taste}", _cppn(taste), False) for taste in CPPN_TASTES]
    return [*cppn, Objective("latent d=16384", _latent_problem, True)]


def make_campaign_crowd(seed: int, adversary: bool) -> Crowd:
    """Three annotators of one taste (one careless half the time), optionally an adversary."""
    members = [
        SimulatedAnnotator("h0", "honest", 0.5, k=K),
        SimulatedAnnotator("h1", "honest", 0.7, k=K),
        SimulatedAnnotator("c0", "careless", 0.5, k=K, carelessness=0.5),
    ]
    if adversary:
        members.append(SimulatedAnnotator("a0", "adversary", 0.5, k=K))
    return Crowd(tuple(members), seed=seed)


def improvements(
    objective: Objective,
    method: str,
    seed: int,
    rounds: int,
    adversary: bool,
    authors: tuple[float, float] = (8.0, 0.03),
) -> list[float]:
    """``1 - f(x_t) / f(x_0)`` after each round of one simulated campaign."""
    problem = objective.make(seed)
    crowd = make_campaign_crowd(seed, adversary)
    common: dict[str, Any] = {"m": M, "k": K, "seed": seed, "crowd": crowd, "problem": problem}
    if method == "new default":
        records = run_campaign(
            rounds=rounds, method="auto", optimizer_options={"shell": objective.shell}, **common
        )
    elif method == "today's default":
        options = {"shell": objective.shell, "schedule": "two_phase", "sgd_moves": False}
        records = run_campaign(
            rounds=rounds, method="weighted_kemeny", optimizer_options=options, **common
        )
    else:
        loop = AuthorsLoop(problem.x0, M, seed, step=authors[0], radius=authors[1])
        records = run_campaign(
            rounds=rounds, method="weighted_kemeny", feed="order", optimizer=loop, **common
        )
    return [1.0 - record.f_ratio for record in records]


def tune_authors(objective: Objective, rounds: int, adversary: bool) -> tuple[float, float]:
    """The authors' step and radius: best median improvement on three tuning seeds."""
    scores = {
        params: float(
            np.median(
                [
                    improvements(
                        objective, "authors' loop", TUNING_SEED + i, rounds, adversary, params
                    )[-1]
                    for i in range(3)
                ]
            )
        )
        for params in AUTHORS_GRID
    }
    return max(scores, key=lambda p: scores[p])


def summarise(curves: np.ndarray, objective: str, method: str) -> dict[str, Any]:
    """Median / p10 / worst improvement at each checkpoint, share not improved."""
    row: dict[str, Any] = {"objective": objective, "method": method}
    for t in CHECKPOINTS:
        if t <= curves.shape[1]:
            at = curves[:, t - 1]
            row[f"median@{t}"] = float(np.median(at))
            row[f"p10@{t}"] = float(np.percentile(at, 10))
            row[f"worst@{t}"] = float(at.min())
            row[f"not improved@{t}"] = float(np.mean(at <= 0.0))
    return row


def run_tail(chosen: list[Objective], seeds: int, adversary: bool, out: str) -> None:
    """``--tail``: :mod:`rankloop.bench.campaign_tail` over today's crowd, a noisier one and,
    for the two-tastes objectives, their crowd."""
    from rankloop.bench.campaign_quorum import quorum_crowd
    from rankloop.bench.campaign_tail import noisy_crowd, print_tail, tail_study

    started = time.perf_counter()
    crowds = {
        "today's three": lambda o, s: None if o.tastes else make_campaign_crowd(s, adversary),
        "twice as noisy": lambda o, s: None if o.tastes else noisy_crowd(s, K),
        "two tastes": lambda o, s: (
            quorum_crowd(s, 3, K, adversary, o.tastes(s)) if o.tastes else None
        ),
    }
    summaries, features, runs = tail_study(chosen, crowds, seeds, M, K)
    print_tail(summaries, features)
    path = save_results(
        out, "campaign-tail", summaries, features=features, runs=runs, seeds=seeds,
        adversary=adversary, seconds=time.perf_counter() - started,
    )  # fmt: skip
    click.echo(f"saved {path} ({time.perf_counter() - started:.0f} s)")


@click.command("campaign")
@click.option("--seeds", default=20, show_default=True, help="Campaigns per objective and method.")
@click.option("--rounds", default=20, show_default=True, help="Rounds per campaign.")
@click.option("--adversary", is_flag=True, help="Add an annotator who answers backwards.")
@click.option(
    "--quick",
    is_flag=True,
    help="Smoke run: no tuning, 3 seeds and 10 rounds (unless --seeds or --rounds say otherwise).",
)
@click.option(
    "--quorum",
    "quorums",
    default=None,
    help="Compare quorum rules instead, e.g. fixed:3,fixed:5,adaptive:2-5: improvement, "
    "rankings spent and round wall time (simulated), with and without straggler offers.",
)
@click.option(
    "--tail",
    is_flag=True,
    help="The weak tail instead: the new default under today's crowd and one twice as noisy "
    "(with --two-tastes, also two tastes), p10 against the median after 10 rounds, and what "
    "the weakest fifth of campaigns have in common.",
)
@click.option(
    "--two-tastes",
    is_flag=True,
    help="With --quorum or --tail: also steer each objective with a crowd of two tastes "
    "(every second annotator prefers another), judged on their mix.",
)
@click.option(
    "--straggler-after",
    default=1.5,
    show_default=True,
    help="With --quorum: offer the last slot once it has run this many median ranking times.",
)
@click.option(
    "--crowd",
    type=click.Choice(["pixel-exact", "perceptual", "both"]),
    default="pixel-exact",
    show_default=True,
    help="pixel-exact: the methods side by side; perceptual: the new default on cppn under "
    "crowds that see phone or desktop tiles (rankloop.bench.perceptual), beside the "
    "pixel-exact crowd; both: the two tables.",
)
@click.option(
    "--fixed-floor", is_flag=True, help="Perceptual: keep the visible floor (no agreement rule)."
)
@click.option(
    "--noise",
    default=1.0,
    show_default=True,
    help="With --quorum: the crowd's temperatures times this (2: as noisy as --tail's "
    "twice-as-noisy crowd).",
)
@click.option(
    "--objectives",
    "only",
    default=None,
    help="With --quorum or --tail: only the objectives whose label contains one of these "
    "comma-separated words (e.g. contrast,structure; a two-tastes objective's label names "
    "both tastes).",
)
@click.option(
    "--out", default=None, help="JSON results [bench-results/campaign(-quorum|-tail).json]"
)
def campaign_command(
    seeds: int,
    rounds: int,
    adversary: bool,
    quick: bool,
    quorums: str | None,
    tail: bool,
    two_tastes: bool,
    straggler_after: float,
    crowd: str,
    fixed_floor: bool,
    noise: float,
    only: str | None,
    out: str | None,
) -> None:
    """The delivered image's improvement: new default vs today's default vs the authors' loop
    (or, with --quorum, quorum rules against each other)."""
    if quick:
        source = click.get_current_context().get_parameter_source
        seeds = seeds if source("seeds") != ParameterSource.DEFAULT else 3
        rounds = rounds if source("rounds") != ParameterSource.DEFAULT else 10
    chosen = objectives()
    if two_tastes:
        chosen += two_taste_objectives(chosen)
    if only:
        words = [w.strip() for w in only.split(",") if w.strip()]
        chosen = [o for o in chosen if any(w in o.label for w in words)]
        if not chosen:
            raise click.BadParameter(f"no objective's label contains any of {only!r}")
    if tail:
        run_tail(chosen, seeds, adversary, out or "bench-results/campaign-tail.json")
        return
    if quorums:
        run_quorum_bench(
            chosen, quorums, seeds, rounds, adversary, straggler_after,
            out or "bench-results/campaign-quorum.json", M, K, noise,
        )  # fmt: skip
        return
    out = out or "bench-results/campaign.json"
    started = time.perf_counter()
    rows, curves_out, verdicts = [], {}, {}
    for objective in objectives() if crowd != "perceptual" else []:
        authors = (8.0, 0.03) if quick else tune_authors(objective, 10, adversary)
        medians = {}
        for method in METHODS:
            curves = np.array(
                [
                    improvements(objective, method, seed, rounds, adversary, authors)
                    for seed in range(seeds)
                ]
            )
            curves_out[f"{objective.label}/{method}"] = curves.tolist()
            row = summarise(curves, objective.label, method)
            if method == "authors' loop":
                row["authors step, radius"] = f"{authors[0]:g}, {authors[1]:g}"
            rows.append(row)
            medians[method] = curves[:, min(10, rounds) - 1]
        new, authors_median = np.median(medians["new default"]), np.median(medians["authors' loop"])
        verdicts[objective.label] = {
            "median_new_over_authors@10": float(new / authors_median)
            if authors_median > 0
            else float("inf"),
            "twice_authors_met": bool(new >= 2.0 * authors_median and new > 0),
            "all_improved_met": bool(np.all(medians["new default"] > 0.0)),
        }
    columns = ["objective", "method"]
    for t in CHECKPOINTS:
        if t <= rounds:
            columns += [f"median@{t}", f"p10@{t}", f"worst@{t}", f"not improved@{t}"]
    if rows:
        click.echo(
            f"Delivered-image improvement 1 - f(x_t)/f(x_0), {seeds} campaigns each, m={M}, "
            f"top-{K}, 3 annotators (one careless){' + an adversary' if adversary else ''}"
        )
        click.echo(format_table(rows, columns))
    for label, verdict in verdicts.items():
        click.echo(
            f"{label}: new/authors median@10 = {verdict['median_new_over_authors@10']:.2f} "
            f"(target >= 2: {'met' if verdict['twice_authors_met'] else 'missed'}); every "
            f"campaign improved by round 10: {'yes' if verdict['all_improved_met'] else 'no'}"
        )
    perceptual = None
    if crowd != "pixel-exact":
        from rankloop.bench.perceptual import report_campaigns

        # No adversary here: the perceptual crowd models people who try.
        perceptual = report_campaigns(
            seeds, rounds, lambda seed: make_campaign_crowd(seed, False), not fixed_floor
        )
    path = save_results(
        out,
        "campaign",
        rows,
        perceptual=perceptual,
        verdicts=verdicts,
        curves=curves_out,
        seeds=seeds,
        rounds=rounds,
        adversary=adversary,
        quick=quick,
        seconds=time.perf_counter() - started,
    )
    if not curves_out:
        click.echo(f"saved {path} ({time.perf_counter() - started:.0f} s)")
        return
    png = plot_improvements(curves_out, path.with_suffix(".png"))
    click.echo(f"saved {path} and {png} ({time.perf_counter() - started:.0f} s)")
