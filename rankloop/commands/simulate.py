"""``rankloop simulate``: a simulated campaign, printed round by round."""

from __future__ import annotations

import time

import click
import numpy as np

from rankloop.core.consensus import METHODS
from rankloop.core.contracts import DEFAULT_FEED, FEEDS
from rankloop.simulation.campaign import run_campaign
from rankloop.simulation.crowd import make_crowd
from rankloop.simulation.objectives import PROBLEM_NAMES


def _weights_summary(weights: dict[str, float], kinds: dict[str, str]) -> str:
    by_kind: dict[str, list[float]] = {}
    for annotator, weight in weights.items():
        by_kind.setdefault(kinds.get(annotator, "?"), []).append(weight)
    parts = []
    for kind in ("honest", "spammer", "adversary"):
        if kind in by_kind:
            parts.append(f"{kind} {np.mean(by_kind[kind]):+.2f}")
    return ", ".join(parts)


@click.command("simulate")
@click.option("--rounds", default=30, show_default=True, help="Rounds to run.")
@click.option("--annotators", default=5, show_default=True, help="Crowd size (all kinds).")
@click.option("--spammers", default=1, show_default=True, help="Annotators answering at random.")
@click.option("--adversaries", default=1, show_default=True, help="Annotators answering reversed.")
@click.option("--temperature", default=0.5, show_default=True, help="Honest annotators' noise.")
@click.option(
    "--dropout", default=0.1, show_default=True, help="Chance an annotator skips a round."
)
@click.option("--k", default=None, type=int, help="Annotators rank only their top k (default all).")
@click.option("--m", default=8, show_default=True, help="Points per round.")
@click.option("--dim", default=64, show_default=True, help="Dimension of the objective.")
@click.option(
    "--objective",
    type=click.Choice(PROBLEM_NAMES),
    default="projected",
    show_default=True,
    help="Synthetic objective (rankloop.simulation.objectives).",
)
@click.option(
    "--consensus",
    "method",
    type=click.Choice(METHODS),
    default="auto",
    show_default=True,
    help="Consensus method.",
)
@click.option(
    "--feed",
    type=click.Choice(FEEDS),
    default=DEFAULT_FEED,
    show_default=True,
    help="Tell the optimizer the consensus's pairwise preferences, or only its order.",
)
@click.option("--attention/--no-attention", default=True, show_default=True)
@click.option("--seed", default=0, show_default=True)
def simulate_command(
    rounds: int,
    annotators: int,
    spammers: int,
    adversaries: int,
    temperature: float,
    dropout: float,
    k: int | None,
    m: int,
    dim: int,
    objective: str,
    method: str,
    feed: str,
    attention: bool,
    seed: int,
) -> None:
    """Run a simulated campaign: a noisy crowd steers the rank-only optimizer.

    Each round prints: the round kind (gradient / line search), f/f0 (the hidden objective
    relative to the start, lower is better), the crowd's agreement (Kendall's W), how well the
    consensus matched the hidden truth (Kendall tau, top-1 hit), and the mean voting weight of
    each kind of annotator (spammers should sink to about 0, adversaries below 0).
    """
    crowd = make_crowd(
        annotators,
        spammers=spammers,
        adversaries=adversaries,
        temperature=temperature,
        k=k,
        dropout=dropout,
        seed=seed,
    )
    kinds = crowd.kinds()
    click.echo(
        f"simulated campaign: {objective} d={dim}, m={m}, {annotators} annotators "
        f"({spammers} spammer, {adversaries} adversary), temperature {temperature}, "
        f"k={k or 'all'}, consensus {method}, feed {feed}, seed {seed}"
    )
    click.echo(
        f"{'round':>5}  {'kind':<11}  {'f/f0':>8}  {'agree W':>7}  {'tau':>5}  {'top1':>4}  "
        "mean weight by kind"
    )
    started = time.perf_counter()
    records = []
    for record in run_campaign(
        objective,
        dim,
        rounds,
        crowd,
        method=method,
        feed=feed,
        m=m,
        k=k,
        seed=seed,
        attention=attention,
    ):
        records.append(record)
        click.echo(
            f"{record.round:>5}  {record.kind:<11}  {record.f_ratio:>8.4f}  "
            f"{record.agreement:>7.2f}  {record.tau:>5.2f}  {'yes' if record.top1 else 'no':>4}  "
            f"{_weights_summary(record.weights, kinds)}"
        )
    elapsed = time.perf_counter() - started
    taus = [r.tau for r in records]
    hits = [r.top1 for r in records]
    click.echo(
        f"done in {elapsed:.1f} s: f/f0 = {records[-1].f_ratio:.4f}, consensus tau to the truth "
        f"{np.mean(taus):.2f} on average, top-1 hit rate {np.mean(hits):.0%}"
    )
