"""The adaptive quorum's rule: is the decision a round feeds settled by the rankings so far?

A round is worth its rankings only through the decision the optimizer takes from it. With the
``verified`` schedule that decision is which move candidate the point moves to, or that it
stays (:func:`rankloop.core.optimizer.verified.chosen_among_preferences` on the weighted
pairwise matrix the ``pairwise`` feed passes on; the top move candidate of the order for the
``order`` feed). Where a round's move candidates are not known (the two-phase schedule, a round
rendered before they were recorded) the decision is the winning candidate. A round is settled
when that decision would, with probability at least ``confidence``, be the same had another
crowd of the same kind answered.

Why a Bayesian bootstrap over the round's rankings, and not the posterior of the scaled
Plackett–Luce fit. What more annotators average out is how much *annotators* disagree: two
tastes, a careless click, an annotator whose noise is not Plackett–Luce. The fit's Laplace
posterior measures only the Plackett–Luce noise of the answers it has, so two annotators who
disagree completely still give a confident posterior when each is confident; resampling the
annotators sees exactly that split. The Bayesian bootstrap (Rubin 1981) draws each ranking's
weight as ``Exp(1)`` (a flat Dirichlet over the rankings) instead of counting resampled
copies: the decision's probability is then smooth in the weights, without the ties of integer
counts among two or three rankings, and costs no refit: a draw is a weighted sum of the
rankings' pairwise matrices, so the coordinator can run it after every ranking. Each ranking
enters with the weight the consensus gave its annotator (reliability learnt over the campaign;
negative for an adversary, read reversed, as ``evidence.weighted_pairwise`` does) times
:data:`FAILED_CHECK_WEIGHT` when its attention check failed.

Consequences, on purpose: annotators who all say the same thing settle the round at the
minimum (every draw agrees), so ``min_annotators_per_round`` is the guard against a lucky
agreement; two who disagree on the decision stay near 1/2 and call in a third, and so on up
to the cap. Deterministic: the draws come from the round's seed and each annotator's id, so
the answer does not depend on the order of the rankings, and the rules compare items only
by their evidence, so not on the items' numbering either (bar exact ties of that evidence).

What two agreeing rankings cannot show. A bootstrap sees only the spread among the rankings
it has: two that agree on the decision leave every draw agreeing, and the round settles at
the minimum whatever the crowd is like. Measured on the campaign benchmark's crowd (three
honest annotators at temperatures 0.5-0.7 and two careless ones, top-3 of 8, 20 campaigns x
10 rounds per objective, every round's answers in a random order): of the rounds settled at
0.9 by their first two rankings, 84-87 % took the decision all five would have taken and
73-84 % the truly best candidate; from three rankings on, 91-100 % took the five's decision.
The remedy is a prior: the Dirichlet-process posterior of which the Bayesian bootstrap is the
limit without one (Ferguson 1973), here a random ranking of the candidates (an annotator who
clicks at random; ``k`` as the round's answers) weighing ``Gamma(prior)`` in every draw (an
honest annotator's consensus weight is about 1). With ``prior=1`` the rounds settled by two rankings took
the five's decision and the best candidate every time (cppn colour, 20 x 10 rounds), but it
asks more: two unanimous rankings give about 0.79, three 0.87, so at the default confidence
0.9 an adaptive 2-5 round spent 43-45 rankings in 10 rounds instead of 31-33 (fixed-5: 50),
and settled at 0.6 (29-32 rankings) its improvement was within seed noise of the plain rule's
at 0.9 on all four objectives. Calibration does not buy improvement here: in this crowd a
round's decision is not what more rankings mostly buy (fixed-2, -3 and -5 improve within 0.05
of each other after 10 rounds; their rankings also feed the direction estimate, which this
rule does not weigh). So the default stays the plain bootstrap (``PRIOR_ANNOTATORS = 0``):
the issue's unanimous round closes at the minimum, and its confidence is the confidence of
the rankings in hand, not a probability that more annotators would agree; ``prior`` (the
benchmark's ``adaptive:2-5@0.6+1``) gives the calibrated one.

A round with nothing to move to. The first round has no direction yet, so no trial: its only
move candidate is the current point, and "it stays" would be settled by any two rankings. Yet
what that round feeds, the first direction estimate, is what every later round's trials follow,
and it is led by the winning candidate (the top-ranked perturbation's weight is the largest).
So such a round settles its winner, as a round whose move candidates are unknown does. Measured
(``bench campaign --quorum --two-tastes``, today's crowd repeated to five, 20 seeds): the first
round took 3.0-4.0 rankings on average instead of 2 (1-2.5 more in 10 rounds), the median
after 10 rounds rose on contrast (0.54 -> 0.57), structure (0.36 -> 0.41), the latent
(0.82 -> 0.87) and colour + contrast (0.28 -> 0.33), p10 on all four single tastes (e.g.
structure 0.21 -> 0.25, latent 0.57 -> 0.62), colour unchanged (0.70); but latent + another
taste fell (0.59 -> 0.44; 13 of 20 campaigns worse, not explained yet). Tables in
docs/explanation/benchmarks.md.

Two options, measured and left off by default. ``move_cost``: a wrong move is what makes the
weak tail (the point moves to a worse one and the next rounds start from there), a wrong stay
costs one round's progress; so a stay may settle once it is wrong with probability at most
``move_cost * (1 - confidence)`` (3: a stay settles at 0.7 when a move needs 0.9). It spends
fewer rankings on rounds whose crowd leans to "stay" without agreeing. Under the benchmark's
crowd twice as noisy (20 seeds) it spent 34-36 rankings in 10 rounds instead of 38-40 with the
median improvement seed by seed unchanged (paired median difference 0.000 on every objective) and
p10 a little higher on three of four (structure 0.06 -> 0.10); under today's crowd it saved
0.5-3 rankings, seed by seed unchanged again, and still left contrast 0.07 behind fixed-5.
``prior=CAMPAIGN_PRIOR``: the prior's weight learnt from the campaign's own disagreement
(:func:`campaign_prior`, the odds of its pooled pairwise disagreement with the consensus: 0 for a
crowd that has always agreed, so a unanimous round still closes at the minimum). It calibrates
where the crowd is noisy, and pays for it: under the noisy crowd (contrast, structure; 12 seeds)
it reached fixed-5's median (0.51 and 0.32 against 0.46 and 0.32; the plain rule 0.46 and 0.28)
with 44-46 rankings in 10 rounds, 9-11 % fewer than fixed-5, not the 35 % the issue asks;
under today's crowd (6 seeds, before the first-round rule) 32-37 rankings and a median below
the plain rule's (contrast 0.52 against 0.59).

References: Rubin, D. B. (1981). The Bayesian bootstrap. *Ann. Statist.* 9(1). Ferguson,
T. S. (1973). A Bayesian analysis of some nonparametric problems. *Ann. Statist.* 1(2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from rankloop.core.consensus.aggregate import aggregate
from rankloop.core.consensus.evidence import parse_rankings
from rankloop.core.consensus.reliability import AnnotatorReliability
from rankloop.core.contracts import Feed
from rankloop.core.optimizer.verified import chosen_among_preferences

#: Bootstrap draws per check: the probability's standard error is at most 1.2 % at 0.9.
SETTLE_DRAWS: Final = 600
#: A ranking whose attention check failed counts this much of its annotator's weight.
FAILED_CHECK_WEIGHT: Final = 0.25
UNDECIDED: Final = -1  # a draw whose evidence names no decision (nothing ranked)
#: The default prior's weight, in annotators of weight 1: none, the plain bootstrap (the
#: module docstring says why, with the measurements).
PRIOR_ANNOTATORS: Final = 0.0
#: ``prior=CAMPAIGN_PRIOR``: the prior's weight learnt from the campaign's own disagreement
#: (:func:`campaign_prior`).
CAMPAIGN_PRIOR: Final = "campaign"
#: What a wrong move costs, in wrong stays: a stay settles once it is wrong with probability
#: at most ``MOVE_COST * (1 - confidence)`` (1: the symmetric rule; the docstring says why).
MOVE_COST: Final = 1.0


@dataclass(frozen=True)
class Settlement:
    """The decision the full weights take, and how sure the bootstrap is of the modal one;
    ``stays``: the modal decision is that the point stays, which settles at the lower bar a
    wrong stay's lower cost allows (``move_cost``, :data:`MOVE_COST`)."""

    decision: int | None
    confidence: float
    stays: bool = False
    move_cost: float = MOVE_COST

    def settled(self, confidence: float) -> bool:
        if self.stays:
            confidence = max(0.5, 1.0 - self.move_cost * (1.0 - confidence))
        return self.confidence >= confidence


def round_seed(round_id: Any) -> int:
    """A stable integer seed for ``round_id`` (a number or a string)."""
    return _stable(f"round:{round_id}")


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def decision(
    pairwise: np.ndarray,
    move_items: Sequence[int] | None,
    candidates: Sequence[int],
    feed: str = Feed.PAIRWISE,
) -> int | None:
    """The decision the optimizer takes from a round with this weighted pairwise evidence.

    Parameters
    ----------
    pairwise : (n, n) ndarray
        ``pairwise[a, b]``: weighted evidence that item ``a`` beats item ``b``.
    move_items : sequence of int or None
        The items ``x`` may move to, the current point first; ``None``: unknown (the winning
        candidate is the decision).
    candidates : sequence of int
        The round's optimizer points (the attention item left out).
    feed : {"pairwise", "order"}
        What the optimizer is told: the matrix (the move needs a majority over the current
        point), or the order (the top move candidate moves).
    """
    if move_items and len(move_items) > 1:
        # Nothing said about the move candidates is a decision too: the point stays (the
        # optimizer reads "no choice" as "the current point": no move, a shorter step).
        if feed == Feed.PAIRWISE:
            chosen = chosen_among_preferences(pairwise, move_items)
        else:
            chosen = _top(pairwise, move_items)
        return move_items[0] if chosen is None else chosen
    return _top(pairwise, candidates)


def _top(pairwise: np.ndarray, items: Sequence[int]) -> int | None:
    """The item of ``items`` with the most net wins; None on a tie or with no evidence."""
    items = list(items)
    net = pairwise.sum(axis=1) - pairwise.sum(axis=0)
    if not np.any(pairwise[items]) and not np.any(pairwise[:, items]):
        return None  # nothing said about any of them
    best = max(net[i] for i in items)
    top = [i for i in items if np.isclose(net[i], best, rtol=1e-9, atol=1e-12)]
    if len(top) > 1:
        return None  # a tie names no decision (and leaves item numbering out of it)
    return top[0]


def settlement(
    rankings: Sequence[tuple[Hashable, Any]],
    n_items: int,
    *,
    weights: Mapping[Any, float],
    move_items: Sequence[int] | None,
    candidates: Sequence[int],
    failed_check: Collection[Hashable] = (),
    feed: str = Feed.PAIRWISE,
    seed: int = 0,
    draws: int = SETTLE_DRAWS,
    prior: float = PRIOR_ANNOTATORS,
    move_cost: float = MOVE_COST,
) -> Settlement:
    """How sure a round's rankings make the decision it feeds (see the module docstring).

    Parameters
    ----------
    rankings : sequence of (annotator_id, best-first order)
        The round's rankings, in any order (one per annotator).
    n_items : int
        The round's items (attention item included).
    weights : mapping
        annotator id (or its ``str``) -> the consensus's weight; 1.0 when missing.
    move_items, candidates, feed
        As :func:`decision`.
    failed_check : collection
        Annotators whose attention check failed in this round.
    seed : int
        The round's seed (:func:`round_seed`).
    draws : int
        Bootstrap draws.
    prior : float
        The weight of the prior's random ranking, in annotators of weight 1 (the consensus's
        weights are about 1 for an honest annotator; 0: the plain Bayesian bootstrap).
    move_cost : float
        A wrong move's cost in wrong stays (:class:`Settlement`).
    """
    answers = parse_rankings(list(rankings), int(n_items))
    failed = {str(a) for a in failed_check}
    signed = []
    for answer in answers:
        w = float(weights.get(answer.annotator, weights.get(answer.key, 1.0)))
        if answer.key in failed:
            w *= FAILED_CHECK_WEIGHT
        # A negative weight reads the votes reversed, with its absolute weight.
        signed.append(abs(w) * (answer.pairs if w >= 0 else answer.pairs.T))
    stacked = np.stack(signed)  # (J, n, n)
    full = decision(stacked.sum(axis=0), move_items, candidates, feed)
    # Each annotator's Exp(1) weights from its own stream: the rankings' order does not matter.
    gammas = np.stack(
        [
            np.random.default_rng([seed, _stable(f"annotator:{answer.key}")]).exponential(
                size=draws
            )
            for answer in answers
        ],
        axis=1,
    )  # (draws, J)
    matrices = np.einsum("bj,jxy->bxy", gammas, stacked)
    if prior > 0:
        matrices += _prior_draws(stacked, candidates, prior, seed, draws)
    counts: dict[int, int] = {}
    for matrix in matrices:
        chosen = decision(matrix, move_items, candidates, feed)
        key = UNDECIDED if chosen is None else chosen
        counts[key] = counts.get(key, 0) + 1
    decided = [(count, key) for key, count in counts.items() if key != UNDECIDED]
    # The modal decision; on a tie of counts a move (the costlier error) rather than a stay.
    stay = move_items[0] if move_items else None
    modal, key = max(decided, key=lambda ck: (ck[0], ck[1] != stay), default=(0, UNDECIDED))
    return Settlement(
        decision=full,
        confidence=modal / draws,
        stays=stay is not None and key == stay,
        move_cost=move_cost,
    )


def _prior_draws(
    stacked: np.ndarray, candidates: Sequence[int], prior: float, seed: int, draws: int
) -> np.ndarray:
    """Each draw's prior term: a uniformly random top-``k`` ranking of the candidates (``k``:
    the most items an answer ranks), weighted ``Gamma(prior)``. The random ranks go to the
    candidates in the order of their evidence, not their numbers, so relabelling the items
    changes nothing (bar exact ties of that evidence)."""
    total = stacked.sum(axis=0)
    net = total.sum(axis=1) - total.sum(axis=0)
    canonical = sorted(candidates, key=lambda i: (-round(float(net[i]), 9), i))
    k = int(max((stacked > 0).any(axis=2).sum(axis=1).max(), 1))
    k = min(k, len(canonical))
    rng = np.random.default_rng([seed, _stable("prior")])
    weights = rng.gamma(prior, size=draws)
    n = stacked.shape[1]
    out = np.zeros((draws, n, n))
    index = np.asarray(canonical)
    for b in range(draws):
        order = index[rng.permutation(len(index))]
        top, rest = order[:k], order[k:]
        for r, a in enumerate(top):
            out[b, a, top[r + 1 :]] = weights[b]
            out[b, a, rest] = weights[b]
    return out


def settle_round(
    rankings: Sequence[tuple[Hashable, Any]],
    n_items: int,
    *,
    method: str,
    reliability: Mapping[str, Any] | None,
    known_worst: Collection[int],
    failed_check: Collection[Hashable],
    move_items: Sequence[int] | None,
    feed: str,
    seed: int,
    prior: float | str = PRIOR_ANNOTATORS,
    move_cost: float = MOVE_COST,
) -> Settlement:
    """:func:`settlement` with the weights the round's consensus would give now: its
    ``method`` run on the rankings so far against a copy of the campaign's ``reliability``
    record (:meth:`AnnotatorReliability.to_dict`; the record itself learns only when the round
    closes). ``prior=CAMPAIGN_PRIOR`` learns the prior's weight from that record
    (:func:`campaign_prior`)."""
    record = AnnotatorReliability.from_dict(reliability) if reliability else None
    if prior == CAMPAIGN_PRIOR:
        prior = campaign_prior(record)
    consensus = aggregate(
        list(rankings),
        int(n_items),
        method=method,
        reliability=record or AnnotatorReliability(),
        known_worst=list(known_worst) or None,
    )
    worst = set(known_worst)
    return settlement(
        rankings,
        n_items,
        weights=consensus.weights,
        move_items=move_items,
        candidates=[i for i in range(int(n_items)) if i not in worst],
        failed_check=failed_check,
        feed=feed,
        seed=seed,
        prior=float(prior),
        move_cost=move_cost,
    )


def campaign_prior(record: AnnotatorReliability | None) -> float:
    """The prior's weight learnt from the campaign: the odds ``d / (1 - d)`` of its pooled
    pairwise disagreement ``d`` with the leave-one-out consensus (the reliability record's
    soft counts, its annotators' own rounds). 0 for a new campaign or a crowd that has always
    agreed (a unanimous round then closes at the minimum); about 0.3 for the benchmark's crowd
    (d 0.15-0.26), 0.5-0.7 for the same crowd twice as noisy (d 0.3-0.4)."""
    if record is None:
        return 0.0
    pooled = record.own_evidence()
    if pooled.agree + pooled.disagree <= 0.0:
        return 0.0
    return pooled.disagree / max(pooled.agree, 1e-9)


__all__ = [
    "CAMPAIGN_PRIOR",
    "FAILED_CHECK_WEIGHT",
    "MOVE_COST",
    "PRIOR_ANNOTATORS",
    "SETTLE_DRAWS",
    "Settlement",
    "campaign_prior",
    "decision",
    "round_seed",
    "settle_round",
    "settlement",
]
