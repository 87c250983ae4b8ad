"""A whole campaign in simulation: optimizer + crowd + consensus, round by round.

:func:`run_campaign` is the reusable core (the end-effect benchmark calls it);
``rankloop simulate`` (:mod:`rankloop.commands.simulate`) prints its progress. Each round mirrors the product's data path: the
optimizer proposes points, a degraded copy of the current best is added as an attention check,
the simulated crowd ranks them (seeing only a noisy view of the hidden objective), the consensus
engine merges the answers, the attention item is dropped, and the optimizer is told the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rankloop.core.consensus import METHODS, AnnotatorReliability, aggregate
from rankloop.core.contracts import DEFAULT_FEED, FEEDS
from rankloop.core.errors import InvalidInput
from rankloop.core.optimizer import RankSGD
from rankloop.core.round_step import candidate_feed, pixel_effect, shown_items, tell
from rankloop.simulation.crowd import Crowd, make_crowd
from rankloop.simulation.objectives import Problem, make_problem
from rankloop.simulation.perceptual_crowd import PerceptualCrowd
from rankloop.simulation.quorum import QuorumRule, attention_failed
from rankloop.simulation.tastes import TastesCrowd

__all__ = ["FEEDS", "RoundRecord", "run_campaign"]

PROJECTED_MIN_DIM = 10  # the projected objective looks through a 10-dimensional projection
MAX_ATTEMPTS = 20  # re-asks of a round in which every annotator dropped out


@dataclass(frozen=True)
class RoundRecord:
    """What happened in one simulated round."""

    round: int
    kind: str
    f_ratio: float  # f(x) / f(x0) after this round's update
    agreement: float  # Kendall's W of the raw answers
    tau: float  # Kendall tau of the consensus to the hidden true order of the round's points
    top1: bool  # consensus winner is the truly best point
    answers: int  # annotators who answered
    weights: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    # A perceptual crowd's view of the round: the share of candidate pairs at least a JND
    # apart at its tile size ("pairs_above"), their median ΔE00 ("median_de").
    perception: dict[str, float] = field(default_factory=dict)


def _kendall_tau(order: list[int], values: np.ndarray) -> float:
    """Kendall tau between a best-first order and the truth (lower value = better)."""
    from scipy.stats import kendalltau

    position = np.empty(len(order))
    position[order] = np.arange(len(order))
    tau = kendalltau(position, values).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def run_campaign(
    objective: str = "projected",
    dim: int = 64,
    rounds: int = 30,
    crowd: Crowd | PerceptualCrowd | TastesCrowd | None = None,
    method: str = "auto",
    feed: str = DEFAULT_FEED,
    m: int = 8,
    k: int | None = None,
    seed: int = 0,
    attention: bool = True,
    optimizer_options: dict[str, Any] | None = None,
    problem: Problem | None = None,
    optimizer: Any = None,
    quorum: QuorumRule | None = None,
) -> Iterator[RoundRecord]:
    """Run a simulated campaign, yielding one :class:`RoundRecord` per round.

    Parameters
    ----------
    objective : str
        A problem of :mod:`rankloop.simulation.objectives` (``"quadratic"``, ``"rosenbrock"``,
        ``"projected"``); lower is better, the crowd sees it only through noisy rankings.
    dim : int
        Its dimension.
    rounds : int
        Rounds to run.
    crowd : Crowd, PerceptualCrowd or TastesCrowd, optional
        Default: ``make_crowd(5, spammers=1, adversaries=1, k=k, seed=seed)``. A perceptual
        crowd sees the round's images at its tile size (the problem must render) and ranks
        what it can tell apart; a tastes crowd's groups each rank by their own taste (the
        problem is then the one the campaign is judged on: :func:`~rankloop.simulation.tastes.mixed_problem`).
    method : str
        Consensus method (:data:`rankloop.core.consensus.METHODS`).
    feed : {"pairwise", "order"}
        Tell the optimizer the consensus's weighted pairwise matrix, or only its order.
    m, k : int
        Points per round, and how many of them the optimizer is told are ranked (None: all).
        The crowd's own ``k`` decides how much each annotator answers.
    seed : int
        Seeds the problem's starting point and the optimizer's perturbations.
    attention : bool
        Add a degraded copy of the best point to every round as an attention check.
    optimizer_options : dict, optional
        Passed to :class:`rankloop.core.optimizer.RankSGD`.
    problem : Problem, optional
        Instead of ``objective`` and ``dim``: a ready problem. When it can render its points
        (``problem.render``), the optimizer is told the pixel effect of each round's
        candidates (:func:`rankloop.core.round_step.pixel_effect`), as the render worker does.
    optimizer : object, optional
        Instead of a new ``RankSGD``: any object with ``ask()``, ``tell(order)`` /
        ``tell(preferences=W)`` and ``x`` (say, a baseline loop), started at ``problem.x0``.
    quorum : QuorumRule, optional
        Which of the crowd's answers each round closes on (:mod:`rankloop.simulation.quorum`):
        the first ``q`` to arrive, or an adaptive quorum settled at its confidence as the
        coordinator settles it. Default: every answer.
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown consensus method {method!r}; use one of {', '.join(METHODS)}")
    if feed not in FEEDS:
        raise InvalidInput(f"unknown feed {feed!r}; use one of {', '.join(FEEDS)}")
    if rounds < 1:
        raise InvalidInput(f"rounds must be >= 1, got {rounds}")
    if problem is None:
        if dim < 1 or (objective == "projected" and dim < PROJECTED_MIN_DIM):
            raise InvalidInput(
                f"dim={dim} is too small for {objective!r}; use --dim {PROJECTED_MIN_DIM} or more"
            )
        problem = make_problem(objective, dim, seed=seed)
    f: Callable[[np.ndarray], np.ndarray] = problem.objective
    f0 = float(f(problem.x0))
    if crowd is None:
        crowd = make_crowd(5, spammers=1, adversaries=1, k=k, seed=seed)
    if optimizer is None:
        optimizer = RankSGD(problem.x0, m=m, k=k, seed=seed, **(optimizer_options or {}))
    reliability = AnnotatorReliability()
    for _ in range(rounds):
        proposal = optimizer.ask()
        values = np.asarray(f(proposal.points), dtype=float)
        if problem.render is not None and hasattr(optimizer, "note_pixel_effect"):
            images = problem.render(np.concatenate([proposal.points, optimizer.x[None]]))
            effect = pixel_effect(proposal.points, images[:-1], optimizer.x, images[-1])
            if effect is not None:
                optimizer.note_pixel_effect(effect)
        n = len(values)
        # The attention item is the last one; the crowd gives it a utility below every real one.
        shown_values = np.append(values, values.max()) if attention else values
        items = shown_items(n, attention)
        attention_items = [i.position for i in items if i.index >= n]
        seen, perception = None, {}
        if isinstance(crowd, PerceptualCrowd):
            if problem.render is None:
                raise InvalidInput("a perceptual crowd needs a problem that renders its points")
            seen = crowd.see(
                crowd.round_images(problem.render, proposal.points, optimizer.x, attention)
            )
            perception = crowd.figures(seen, n)
        for attempt in range(MAX_ATTEMPTS):
            if seen is not None:
                assert isinstance(crowd, PerceptualCrowd)
                answers = crowd.rank(
                    shown_values, proposal.round, attention_items, attempt, seen=seen
                )
            elif isinstance(crowd, TastesCrowd):
                answers = crowd.rank_points(
                    proposal.points, proposal.round, attention_items, attempt, attention
                )
            else:
                assert isinstance(crowd, Crowd)
                answers = crowd.rank(shown_values, proposal.round, attention_items, attempt=attempt)
            if answers:
                break
        else:
            raise InvalidInput("every annotator dropped out of every attempt; lower the dropout")
        if quorum is not None:
            answers = _quorum_answers(
                quorum, answers, optimizer, reliability, len(shown_values), attention_items,
                method=method, feed=feed, seed=seed, round_number=proposal.round,
            )  # fmt: skip
        consensus = aggregate(
            answers,
            len(shown_values),
            method=method,
            reliability=reliability,
            known_worst=attention_items,
        )
        told = candidate_feed(
            consensus.order, consensus.pairwise, items, feed, consensus.agreement, len(answers)
        )
        tell(optimizer, told, n)
        order = told.order
        truth_best = int(np.argmin(values))
        yield RoundRecord(
            round=proposal.round,
            kind=proposal.kind,
            f_ratio=float(f(optimizer.x)) / f0 if f0 != 0 else float(f(optimizer.x)),
            agreement=consensus.agreement,
            tau=_kendall_tau(order, values),
            top1=order[0] == truth_best,
            answers=len(answers),
            weights={str(a): w for a, w in consensus.weights.items()},
            stats=optimizer.stats,
            perception=perception,
        )


def _quorum_answers(
    quorum: QuorumRule,
    answers: list[Any],
    optimizer: Any,
    reliability: AnnotatorReliability,
    n_items: int,
    attention_items: list[int],
    *,
    method: str,
    feed: str,
    seed: int,
    round_number: int,
) -> list[Any]:
    """The answers a round closes on under ``quorum`` (arrival order drawn per round)."""
    from rankloop.core.settle import settle_round

    move = getattr(optimizer, "move_items", None)
    move_items = move() if callable(move) else None
    record = reliability.to_dict()

    def settled(subset: list[Any]) -> bool:
        return settle_round(
            subset,
            n_items,
            method=method,
            reliability=record,
            known_worst=attention_items,
            failed_check=[a for a, order in subset
                          if attention_failed(order, attention_items, n_items)],
            move_items=move_items,
            feed=feed,
            seed=seed * 100_003 + round_number,
            prior=quorum.prior,
            move_cost=quorum.move_cost,
        ).settled(quorum.confidence)  # fmt: skip

    rng = np.random.default_rng([seed, round_number, 24])
    return quorum.take(answers, rng, settled)
