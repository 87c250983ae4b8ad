"""The verified round: every round estimates a direction *and* may move, only to a point ranked
above the current one.

Why a new schedule. In the authors' two-phase loop (gradient rounds, then a line search) only
one round in ``gradient_rounds + 1`` can move the point people see as the current best; with
``sgd_moves`` the gradient rounds move it too, but unverified: a noisy estimate can make the
delivered image worse and nobody ranked the move. A verified round does both jobs at once.

Layout of a round of ``m`` points (shown shuffled, reproducibly from ``(seed, round)``):

- the *centre*, the current point ``x`` itself (``xi = 0``);
- ``T`` *trial steps* ``x + s_j * u`` along the unit direction ``u`` learnt from the previous
  rounds, ``s = (2 eta, eta)`` (one trial, ``eta``, for ``m < 6``; none while there is no
  direction yet, i.e. in round 0);
- ``P = m - 1 - T`` *perturbations* ``x + mu * xi_i``, ``xi_i = D z_i``, ``z_i ~ N(0, I)``.

Move rule (the delivered point only ever changes to a crowd-preferred point). Among the centre
and the trials, the candidate the consensus places highest is chosen; ``x`` moves to it only
if it is a trial that the consensus places *above the centre*: earlier in the order (a top-k
answer that ranks the trial and not the centre places it above), or, told a preference matrix
``W``, with at least :data:`MOVE_MAJORITY` of the evidence between the two for the trial (one
careless voter of three cannot move the image). Otherwise ``x`` stays. So ``x`` is always the
current point or a point the crowd ranked above it in the round that moved there.

Step rule (a per-round line search): the longer trial won -> ``eta`` doubles (to the step just
taken); the shorter won -> ``eta`` stays; nothing beat the centre -> ``eta`` halves (a single
trial, for ``m < 6``: success grows ``eta`` by ``sqrt 2``). A top-k answer that ranked neither
the centre nor a trial says that ``k`` small perturbations beat all of them: the steps were
too long, ``eta`` halves. Round 0 shows no trial and keeps ``eta``.

Estimator. The perturbations *and the centre* (as ``xi = 0``) form the DAG of the ranking
restricted to them (a top-k answer restricted to these items is a top-k' answer, ``k' <= k``),
and the descent estimate is ``-g = sum_i w_i xi_i`` with the DAG's weights (or the preference
weights of ``W`` restricted to them). Why this is correct:

- the weights of a DAG sum to zero (each edge adds +1 and -1), so a ranking that says nothing
  about ``f`` (a spammer's) gives an estimate of mean zero;
- an edge ``a -> b`` between two perturbations contributes ``xi_b - xi_a``; for a quadratic
  ``f`` and ``mu -> 0``, ``E[(xi_b - xi_a) 1{f(x + mu xi_a) < f(x + mu xi_b)}]`` is parallel to
  ``D^2 grad f`` (Tang et al., Lemma 1, in the whitened variable ``y = D^-1 x``);
- an edge between the centre and a perturbation contributes ``+xi_b`` (centre better) or
  ``-xi_a`` (perturbation better): ``E[xi 1{grad f . xi > 0}] = E[-xi 1{grad f . xi < 0}]``,
  again parallel to ``D^2 grad f`` as ``mu -> 0``. The centre therefore adds information
  without bias, and a top-k answer that ranks only trials and the centre still says that the
  centre beat every perturbation: an estimate, where the perturbation-only DAG has none;
- trial steps are left out: they lie along ``u``, which is not random, so their edges would
  bias the estimate toward the previous direction;
- only ranks enter, so the round is invariant under any increasing transform of ``f``.

Direction memory. Estimates are summed with a decay (:data:`DIRECTION_MEMORY` per round), an
evolution path in the spirit of CMA-ES's: it averages the noise of single estimates of a
noisy crowd while following the gradient as ``x`` moves. After a move that settles the line
search along ``u`` (a trial won, and not the longest of two), the memory's and the round's
component along ``u`` is dropped: on a quadratic a line search leaves (nearly) no slope along
its line, while what the memory says about the other directions still holds (on a sphere
exactly: a move along ``u`` changes the gradient only along ``u``). Measured on the
benchmark's d = 400 sphere (top-3), this projection lowered f/f0 six-fold.

References
----------
Tang, Z., Rybin, D. & Chang, T.-H. (2024). Zeroth-order optimization meets human feedback:
provable learning via ranking oracles. *ICLR* (arXiv 2303.03751).
Hansen, N. (2016). The CMA evolution strategy: a tutorial. arXiv 1604.00772.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rankloop.core.optimizer.estimators import dag_weights, preference_weights
from rankloop.core.optimizer.noise import reproducible_permutation

VERIFIED = "verified"

#: Share of the summed direction kept from one round to the next.
DIRECTION_MEMORY = 0.5
#: Trial steps as multiples of ``eta``, longest first (the first ``T`` are used).
TRIAL_FACTORS = (2.0, 1.0)
#: Share of the pairwise evidence between a trial and the centre that must favour the trial
#: before ``x`` moves there (a clear majority: one careless voter cannot move the image).
MOVE_MAJORITY = 2.0 / 3.0
#: Step factor when nothing beat the centre.
SHRINK = 0.5
#: Step factor when the single trial (rounds of fewer than 6 points) beat the centre.
GROW_ONE_TRIAL = 2.0**0.5

CENTRE = "best"


@dataclass(frozen=True)
class Layout:
    """Roles of the unshuffled points of a verified round: centre, trials, perturbations."""

    trials: int
    perturbations: int

    @property
    def size(self) -> int:
        return 1 + self.trials + self.perturbations

    @property
    def centre(self) -> int:
        return 0

    def trial(self, j: int) -> int:
        return 1 + j

    @property
    def estimator_items(self) -> list[int]:
        """The centre and the perturbations: the points the estimator reads."""
        return [0, *range(1 + self.trials, self.size)]

    @property
    def move_items(self) -> list[int]:
        """The centre and the trials: the points ``x`` may move to (the centre = stay)."""
        return list(range(1 + self.trials))

    def label(self, index: int) -> str:
        if index == 0:
            return CENTRE
        if index <= self.trials:
            return f"step{index - 1}"
        return "perturbation"


def layout(m: int, round_number: int, has_direction: bool) -> Layout:
    """How many trials and perturbations a round of ``m`` points shows.

    Two trials from ``m = 6`` on, one below; none before there is a direction. With ``m = 2``
    the rounds alternate between one perturbation (odd rounds show the trial).
    """
    if not has_direction:
        trials = 0
    elif m >= 6:
        trials = 2
    elif m >= 3:
        trials = 1
    else:
        trials = round_number % 2
    return Layout(trials=trials, perturbations=m - 1 - trials)


def trial_steps(eta: float, trials: int) -> np.ndarray:
    """The trial step lengths, longest first."""
    return eta * np.asarray(TRIAL_FACTORS[-trials:] if trials == 1 else TRIAL_FACTORS[:trials])


def estimator_weights_from_order(order: Sequence[int], lay: Layout) -> np.ndarray | None:
    """Descent weights over :attr:`Layout.estimator_items` from a best-first (top-k) order.

    The order restricted to the estimator's items is a top-k' order over them; ``None`` when it
    holds no comparison (k' = 0 with nothing ranked, or a single item).
    """
    items = lay.estimator_items
    if len(items) < 2:
        return None
    position = {item: i for i, item in enumerate(items)}
    sub = [position[i] for i in order if i in position]
    if not sub:  # every ranked point was a trial: nothing about the estimator's items
        return None
    return dag_weights(sub, len(items))


def estimator_weights_from_preferences(w: np.ndarray, lay: Layout) -> np.ndarray | None:
    """Descent weights over :attr:`Layout.estimator_items` from a preference matrix ``W``."""
    items = lay.estimator_items
    if len(items) < 2:
        return None
    sub = w[np.ix_(items, items)]
    if float(sub.sum()) <= 0.0:
        return None
    return preference_weights(sub)


def chosen_from_order(order: Sequence[int], lay: Layout) -> int | None:
    """The move candidate ranked highest, or ``None`` when no candidate was ranked."""
    candidates = set(lay.move_items)
    for item in order:
        if item in candidates:
            return int(item)
    return None


def chosen_from_preferences(w: np.ndarray, lay: Layout) -> int | None:
    """The trial with the most net wins among the candidates that beats the centre pairwise,
    the centre when none does, ``None`` when ``W`` says nothing about any candidate."""
    items = lay.move_items
    sub = w[np.ix_(items, items)]
    if float(sub.sum()) <= 0.0:
        return None
    centre = lay.centre
    net = sub.sum(axis=1) - sub.sum(axis=0)
    preferred = [
        i
        for i in items[1:]
        if w[i, centre] > 0 and w[i, centre] >= MOVE_MAJORITY * (w[i, centre] + w[centre, i])
    ]
    if not preferred:
        return centre
    return max(preferred, key=lambda i: (net[items.index(i)], -i))


def next_step(eta: float, chosen: int | None, lay: Layout) -> tuple[float, float]:
    """The step after this round, and the length of the step taken (0 if none)."""
    if lay.trials == 0:  # nothing was tried (round 0): nothing to learn about the step
        return eta, 0.0
    if chosen is None or chosen == lay.centre:
        return eta * SHRINK, 0.0
    steps = trial_steps(eta, lay.trials)
    taken = float(steps[chosen - 1])
    if lay.trials == 1:  # one trial at eta: grow a little on success (a 2/3 success rule)
        return eta * GROW_ONE_TRIAL, taken
    # The longest trial won: the optimum lies further, next round tries twice as far again.
    return (taken if chosen == lay.trial(0) else eta), taken


def settled(chosen: int, lay: Layout) -> bool:
    """Whether the move ends the line search along ``u``: a trial won, and not the longest
    of several (which says the optimum lies further along ``u``)."""
    return chosen != lay.centre and not (lay.trials > 1 and chosen == lay.trial(0))


class VerifiedRounds:
    """The verified rounds of :class:`~rankloop.core.optimizer.RankSGD` (a mixin: it uses the
    optimizer's state and shared helpers)."""

    if TYPE_CHECKING:
        _x: np.ndarray
        _m: int
        _seed: int
        _round: int
        _step: float
        _options: dict[str, Any]
        _direction_sum: np.ndarray
        _direction_count: float

        def _radius(self) -> float: ...
        def _perturbations(self, round_number: int, count: int | None = None) -> np.ndarray: ...
        def _to_shell(self, points: np.ndarray) -> np.ndarray: ...
        def _search_direction(self) -> np.ndarray: ...
        def _adapt_metric(
            self, weights: np.ndarray, ranked: int, count: int | None = None
        ) -> None: ...

    def _layout(self) -> Layout:
        has_direction = bool(np.any(self._direction_sum))
        return layout(self._m, self._round, has_direction)

    def _display(self) -> np.ndarray:
        """Unshuffled point shown at each position of a verified round."""
        return reproducible_permutation(self._seed, self._round, self._m)

    def _trial_points(self, lay: Layout) -> np.ndarray:
        steps = trial_steps(self._step, lay.trials)
        points = self._x + steps[:, None] * self._search_direction()[None, :]
        return self._to_shell(points) if self._options["shell"] else points

    def _verified_points(self) -> np.ndarray:
        """Unshuffled points: the centre, the trial steps (longest first), the perturbations."""
        lay = self._layout()
        perturbations = self._perturbations(self._round, lay.perturbations)
        around = self._x + self._radius() * perturbations
        if self._options["shell"]:
            around = self._to_shell(around)
        return np.vstack([self._x[None, :], self._trial_points(lay), around])

    def _tell_verified(
        self, order: list[int] | None, preferences: np.ndarray | None
    ) -> dict[str, Any]:
        lay = self._layout()
        display = self._display()
        if order is not None:
            unshuffled = [int(display[i]) for i in order]
            weights = estimator_weights_from_order(unshuffled, lay)
            chosen = chosen_from_order(unshuffled, lay)
            ranked = sum(i > lay.trials for i in unshuffled)  # perturbations ranked
        else:
            assert preferences is not None
            w = np.empty_like(preferences)
            w[np.ix_(display, display)] = preferences
            weights = estimator_weights_from_preferences(w, lay)
            chosen = chosen_from_preferences(w, lay)
            ranked = self._m
        estimate = np.zeros_like(self._x)
        if weights is not None and lay.perturbations > 0:
            perturbations = self._perturbations(self._round, lay.perturbations)
            estimate = weights[1:] @ perturbations  # the centre's xi is 0
            if self._options["adapt_metric"]:
                self._adapt_metric(weights[1:], ranked, lay.perturbations)
        moved = 0.0
        memory = self._direction_sum * DIRECTION_MEMORY
        if chosen is not None and chosen != lay.centre:
            target = self._trial_points(lay)[chosen - 1]
            moved = float(np.linalg.norm(target - self._x))
            self._x = target.copy()
            if settled(chosen, lay):
                # A line search along u that stopped short of its longest trial leaves (on a
                # quadratic, nearly) no slope along u: what the memory and this estimate say
                # about u is spent; what they say about the other directions still holds.
                u = self._search_direction()
                memory -= (memory @ u) * u
                estimate -= (estimate @ u) * u
        self._direction_sum = memory + estimate
        self._direction_count = self._direction_count * DIRECTION_MEMORY + 1.0
        self._step, picked_step = next_step(self._step, chosen, lay)
        label = "none" if chosen is None else lay.label(chosen)
        return {
            "moved": moved,
            "picked_step": picked_step,
            "accepted": int(moved > 0),
            "picked": label,
        }
