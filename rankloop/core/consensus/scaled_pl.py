"""A scaled Plackett–Luce model: each annotator's scale learnt with the items' utilities.

Model. Round ``r`` shows items with utilities ``u`` (prior ``N(0, 1)`` each, the scale on
which honest annotators' noise is measured); annotator ``j`` answers with a Plackett–Luce
ranking of the utilities ``s_j * u``: each choice picks item ``w`` from the items not yet
placed, ``C``, with probability ``exp(s_j u_w) / sum_{c in C} exp(s_j u_c)``. The scale
``s_j`` is ``1 / temperature`` for an honest annotator, 0 for a spammer (every ranking equally
likely), negative for an adversary (rankings read backwards). Top-k answers are their first
``k`` choices, exactly; a tied group contributes one choice per member over the items left
minus the other members (as :mod:`.plackett_luce`).

Inference across a campaign's rounds (online EM with a Laplace approximation). Each annotator's
scale carries a Gaussian belief ``N(mean_j, 1 / precision_j)`` over the rounds; a new
annotator starts from ``N(PRIOR_SCALE, 1 / PRIOR_PRECISION)``. Each round:

1. E step, leave-one-out: for each annotator ``j``, the utilities implied by the *other*
   annotators (MAP under their current scales, by Newton's method) stand in for the truth, so
   nobody's scale is inflated by utilities fitted to their own answer;
2. M step: ``s_j`` maximises ``j``'s log-likelihood given those utilities plus the Gaussian
   log-prior from the earlier rounds (Newton in one variable: the PL log-likelihood is concave
   in the scale); the precision grows by the round's Fisher information about ``s_j``,
   ``sum over choices of Var_p(u_C)``. Steps 1-2 repeat :data:`ROUND_PASSES` times within the
   round, each judging with the others' scales of the pass before;
3. the round's consensus: the MAP utilities of all answers under the updated scales.

The belief is two numbers per annotator, so a campaign's record stays small; earlier rounds
enter through it rather than by refitting their utilities (a quadratic approximation of their
log-likelihood in ``s_j``, exact for the Gaussian part and close once a few rounds are in).
Attention items (known to be worst) are held at utility ``-ATTENTION_UTILITY``, so an annotator
who ranks one high gains evidence for a low or negative scale whatever the others answered.

The likelihood is unchanged when every scale and every utility change sign, so the campaign's
posterior has a mirror mode that fits the answers as well; which of the two the beliefs sit in
is checked after every round by :mod:`.orientation` (an honest-majority prior on the signs,
and the attention checks), called from :func:`~rankloop.core.consensus.aggregate.aggregate`.

References
----------
Plackett, R. L. (1975). The analysis of permutations. *Applied Statistics* 24(2).
Luce, R. D. (1959). *Individual choice behavior*. Wiley.
Hunter, D. R. (2004). MM algorithms for generalized Bradley–Terry models. *Ann. Statist.* 32(1).
Raykar, V. C. et al. (2010). Learning from crowds. *JMLR* 11 (annotator parameters learnt
jointly with the truth by EM).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rankloop.core.consensus.evidence import Answer
from rankloop.core.errors import ConvergenceError

#: A new annotator's scale belief: mean and precision (mildly trusting, easily overturned).
PRIOR_SCALE = 1.0
PRIOR_PRECISION = 1.0
#: Precision of the items' utility prior N(0, 1 / UTILITY_PRECISION).
UTILITY_PRECISION = 1.0
#: Attention items are known to be worst: their utility is held this many prior standard
#: deviations below the mean of the real items (as far as the simulated crowd puts them).
ATTENTION_UTILITY = 3.0
#: Newton steps of each scale update (the log-likelihood is concave in the scale).
NEWTON_STEPS = 20
#: Leave-one-out passes within a round (the scales of the others, refined each pass).
ROUND_PASSES = 3
#: Newton steps of a utility fit, at most (it stops once the posterior stops improving).
NEWTON_MAX_STEPS = 50


@dataclass(frozen=True)
class Choices:
    """A round's choices: who chose (index into annotators), which item, from which set."""

    annotator: np.ndarray  # (c,) int
    winner: np.ndarray  # (c,) int
    sets: np.ndarray  # (c, n) bool

    def subset(self, mask: np.ndarray) -> Choices:
        return Choices(self.annotator[mask], self.winner[mask], self.sets[mask])


def choices_of(answers: Sequence[Answer], n_items: int) -> Choices:
    """The exact choice decomposition of every answer (top-k: its first k choices)."""
    who, winners, sets = [], [], []
    for j, answer in enumerate(answers):
        remaining = set(answer.shown)
        for group in answer.groups:
            remaining -= set(group)
            for winner in group:
                if remaining:
                    row = np.zeros(n_items, dtype=bool)
                    row[[winner, *remaining]] = True
                    who.append(j)
                    winners.append(winner)
                    sets.append(row)
    if not sets:
        return Choices(np.zeros(0, int), np.zeros(0, int), np.zeros((0, n_items), bool))
    return Choices(np.asarray(who), np.asarray(winners), np.stack(sets))


def _attention_mask(n_items: int, known_worst: frozenset[int]) -> np.ndarray:
    mask = np.zeros(n_items, dtype=bool)
    mask[sorted(known_worst)] = True
    return mask


def _choice_terms(
    u: np.ndarray, s: np.ndarray, choices: Choices
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihood of the choices, its gradients in ``u`` and ``s``, and the per-choice
    probabilities (rows of the choice sets)."""
    scale = s[choices.annotator]
    z = np.where(choices.sets, scale[:, None] * u[None, :], -np.inf)
    top = z.max(axis=1, keepdims=True)
    weights = np.exp(z - top)
    total = weights.sum(axis=1, keepdims=True)
    p = weights / total
    rows = np.arange(len(choices.winner))
    ll = float((z[rows, choices.winner] - top[:, 0] - np.log(total[:, 0])).sum())
    indicator = np.zeros_like(p)
    indicator[rows, choices.winner] = 1.0
    grad_u = ((indicator - p) * scale[:, None]).sum(axis=0)
    expected = (p * np.where(choices.sets, u[None, :], 0.0)).sum(axis=1)
    per_choice_s = u[choices.winner] - expected
    grad_s = np.bincount(choices.annotator, weights=per_choice_s, minlength=len(s))
    return ll, grad_u, grad_s, p


@dataclass(frozen=True)
class RoundFit:
    """The fitted utilities and each annotator's updated scale belief."""

    utilities: np.ndarray
    scale_mean: np.ndarray
    scale_precision: np.ndarray


def fit_round(
    answers: Sequence[Answer],
    n_items: int,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    known_worst: frozenset[int] = frozenset(),
    fixed_scales: np.ndarray | None = None,
) -> RoundFit:
    """Update each annotator's scale belief with this round, then fit the round's utilities.

    Parameters
    ----------
    answers : sequence of Answer
    n_items : int
    prior_mean, prior_precision : (J,) ndarray
        Each annotator's scale belief from the earlier rounds.
    known_worst : frozenset of int
        Attention items.
    fixed_scales : (J,) ndarray, optional
        Known scales: fit only the utilities (the known-scale limit of the benchmark).

    Raises
    ------
    ConvergenceError
        The optimiser failed to reach a finite objective.
    """
    choices = choices_of(answers, n_items)
    checks = _attention_mask(n_items, known_worst)
    if fixed_scales is not None:
        scales = np.asarray(fixed_scales, dtype=float)
        u = fit_utilities(choices, scales, n_items, checks, answers)
        return RoundFit(u, scales, np.asarray(prior_precision, dtype=float))
    mean = np.asarray(prior_mean, dtype=float).copy()
    precision = np.asarray(prior_precision, dtype=float).copy()
    for _ in range(ROUND_PASSES):
        # Leave-one-out: judge annotator j against the utilities the others imply, so that
        # nobody's scale is inflated by utilities fitted to their own answer. Each pass judges
        # with the others' scales from the pass before (EM within the round); the round's
        # information is added to the prior once, in the last pass.
        current = mean.copy()
        for j in range(len(answers)):
            others = choices.annotator != j
            u_others = fit_utilities(choices.subset(others), current, n_items, checks, answers)
            mean[j], precision[j] = scale_posterior(
                u_others, choices.subset(~others), j, prior_mean[j], prior_precision[j]
            )
        if np.allclose(mean, current, atol=1e-3):
            break
    u = fit_utilities(choices, mean, n_items, checks, answers)
    return RoundFit(utilities=u, scale_mean=mean, scale_precision=precision)


def fit_utilities(
    choices: Choices,
    scales: np.ndarray,
    n_items: int,
    checks: np.ndarray,
    answers: Sequence[Answer],
) -> np.ndarray:
    """MAP utilities given the scales: PL choices, attention anchors, the N(0, 1) prior.

    The log-posterior is concave in ``u`` (log-sum-exp is convex, the prior strictly concave),
    so damped Newton steps converge; the Hessian of a choice is ``-s**2 (diag p - p p^T)``.
    """
    scales = np.asarray(scales, dtype=float)
    u = _weighted_borda(answers, n_items, scales, choices)
    u[checks] = -ATTENTION_UTILITY
    value = _log_posterior(u, scales, choices, checks)[0]
    for _ in range(NEWTON_MAX_STEPS):
        _, gradient, hessian = _log_posterior(u, scales, choices, checks, hessian=True)
        step = np.linalg.solve(hessian, -gradient)
        for _ in range(30):  # halve until the posterior does not decrease
            candidate = u + step
            new_value = _log_posterior(candidate, scales, choices, checks)[0]
            if new_value >= value - 1e-12:
                break
            step = step / 2.0
        else:
            break
        u, improvement, value = candidate, new_value - value, new_value
        if improvement < 1e-10 or float(np.abs(step).max()) < 1e-8:
            break
    if not np.all(np.isfinite(u)):
        raise ConvergenceError("scaled Plackett–Luce fit diverged")
    return u


def _log_posterior(
    u: np.ndarray,
    scales: np.ndarray,
    choices: Choices,
    checks: np.ndarray,
    hessian: bool = False,
) -> tuple[float, np.ndarray, np.ndarray]:
    """The utilities' log-posterior, its gradient and (if asked) its Hessian; the attention
    items (``checks``) are held at ``-ATTENTION_UTILITY``."""
    ll, grad, _, p = _choice_terms(u, scales, choices)
    n = len(u)
    h = np.zeros((n, n))
    if hessian and len(p):
        s2 = scales[choices.annotator] ** 2
        h -= np.diag((s2[:, None] * p).sum(axis=0)) - (p.T * s2) @ p
    free = ~checks
    ll -= 0.5 * UTILITY_PRECISION * float(u[free] @ u[free])
    grad = np.where(free, grad - UTILITY_PRECISION * u, 0.0)
    h -= UTILITY_PRECISION * np.eye(n)
    h[checks, :] = 0.0
    h[:, checks] = 0.0
    h[checks, checks] = -1.0
    return ll, grad, h


def scale_posterior(
    u: np.ndarray, choices: Choices, j: int, mean: float, precision: float
) -> tuple[float, float]:
    """Gaussian belief about one annotator's scale after their choices, given utilities ``u``.

    The log-likelihood of PL choices is concave in the scale, so a few Newton steps on it plus
    the Gaussian log-prior find the mode; the new precision adds the Fisher information
    ``sum over choices of Var_p(u_C)`` at the mode.
    """
    s = float(mean)
    information = 0.0
    for _ in range(NEWTON_STEPS):
        scales = np.full(j + 1, s)
        _, _, grad_s, p = _choice_terms(u, scales, choices)
        information = _information(u, choices, p)
        gradient = float(grad_s.sum()) - precision * (s - mean)
        step = gradient / (information + precision)
        s += step
        if abs(step) < 1e-6:
            break
    return s, float(precision + information)


def _information(u: np.ndarray, choices: Choices, p: np.ndarray) -> float:
    masked = np.where(choices.sets, u[None, :], 0.0)
    expected = (p * masked).sum(axis=1)
    return float(((p * masked**2).sum(axis=1) - expected**2).sum())


def _weighted_borda(
    answers: Sequence[Answer], n_items: int, scales: np.ndarray, choices: Choices
) -> np.ndarray:
    """Starting utilities: scale-weighted net pairwise wins of the answers in ``choices``."""
    net = np.zeros(n_items)
    for j in np.unique(choices.annotator):
        pairs = answers[int(j)].pairs
        net += scales[int(j)] * (pairs.sum(axis=1) - pairs.sum(axis=0))
    spread = float(net.std())
    return (net - net.mean()) / spread if spread > 0 else net
