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
- ``P = m - 1 - T`` *perturbations* ``b + mu * xi_i``, ``xi_i = D z_i``, ``z_i ~ N(0, I)``,
  around a *base point* ``b``: the *anchor* ``b = x + eta * u`` (the shorter trial) in the
  ``anchored`` layout (the default since state version 4), the centre ``b = x`` in the
  ``centred`` layout (version 3 states continue with it) and in round 0.

Why anchored. A trial that works is better than every small perturbation around the centre, so
in the centred layout a top-3 answer spends its ranks on the trials and says next to nothing
about the perturbations (often only which one was best): the estimate starves exactly when the
steps succeed. Around the anchor the perturbations compete with the anchor itself, so a top-k
answer ranks them where people look, and the estimate is read at the point where ``x`` moves
(the anchor), not one step behind. Measured (3 seeds, the ``bench optimizer`` cases): f/f0 on
the d = 400 shifted sphere with top-3 answers 1.8e-3 -> 5.5e-4, on the d = 16,384 latent with
campaign settings 3.8e-2 -> 1.7e-2; the campaign benchmark's median improvement after 10
rounds rose for every taste (numbers in docs/explanation/benchmarks.md).

Move rule (the delivered point only ever changes to a crowd-preferred point). Among the centre
and the move candidates (the trials; in the anchored layout also the perturbations, while they
lie within a step of the anchor), the one the consensus places highest is chosen; ``x`` moves
to it only if it is not the centre and the consensus places it *above the centre*: earlier in
the order (a top-k answer that ranks it and not the centre places it above), or, told a
preference matrix ``W``, with at least :data:`MOVE_MAJORITY` of the evidence between the two
for it (one careless voter of three cannot move the image). Otherwise ``x`` stays. So ``x`` is
always the current point or a point the crowd ranked above it in the round that moved there.
Perturbations wider than the step (while a learnt metric warms up) are not move candidates: a
move to one would be a random jump, not a step along ``u``.

Step rule (a per-round line search): the longer trial won -> ``eta`` doubles (to the step just
taken); the shorter (or, anchored, a perturbation around it) won -> ``eta`` stays; nothing beat
the centre -> ``eta`` halves (a single trial, for ``m < 6``: success grows ``eta`` by
``sqrt 2``). A centred top-k answer that ranked neither the centre nor a trial says that ``k``
small perturbations beat all of them: the steps were too long, ``eta`` halves. Round 0 shows
no trial and keeps ``eta``.

Estimator. The perturbations *and their base point* (as ``xi = 0``) form the DAG of the ranking
restricted to them (a top-k answer restricted to these items is a top-k' answer, ``k' <= k``),
and the descent estimate is ``-g = sum_i w_i xi_i`` with the DAG's weights (or the preference
weights of ``W`` restricted to them). Why this is correct:

- the weights of a DAG sum to zero (each edge adds +1 and -1), so a ranking that says nothing
  about ``f`` (a spammer's) gives an estimate of mean zero;
- an edge ``a -> b`` between two perturbations contributes ``xi_b - xi_a``; for a quadratic
  ``f`` and ``mu -> 0``, ``E[(xi_b - xi_a) 1{f(x + mu xi_a) < f(x + mu xi_b)}]`` is parallel to
  ``D^2 grad f`` (Tang et al., Lemma 1, in the whitened variable ``y = D^-1 x``);
- an edge between the base point and a perturbation contributes ``+xi_b`` (base better) or
  ``-xi_a`` (perturbation better): ``E[xi 1{grad f . xi > 0}] = E[-xi 1{grad f . xi < 0}]``,
  again parallel to ``D^2 grad f`` (at ``b``) as ``mu -> 0``. The base point therefore adds
  information without bias, and a top-k answer that ranks the base point above the
  perturbations it leaves unranked still gives an estimate, where the perturbation-only DAG
  has none;
- the centre and the other trial are left out: they lie along ``u`` from ``b``, which is not
  random, so their edges would bias the estimate toward the previous direction;
- a top-k answer restricted to the estimator's items is a top-k' answer: ranked items get the
  DAG's weights ``n + 1 - 2 r``, the unranked ones one equal weight ``-k'`` (their order is
  unknown, and CMA-ES fed the same answer ties them too), and all sum to zero;
- only ranks enter, so the round is invariant under any increasing transform of ``f``.

Direction memory. Estimates are summed with a decay (:data:`DIRECTION_MEMORY` per round), an
evolution path in the spirit of CMA-ES's: it averages the noise of single estimates of a
noisy crowd while following the gradient as ``x`` moves. After a move that settles the line
search along ``u`` (a trial won, and not the longest of two), the memory's and the round's
component along ``u`` is dropped: on a quadratic a line search leaves (nearly) no slope along
its line, while what the memory says about the other directions still holds (on a sphere
exactly: a move along ``u`` changes the gradient only along ``u``). An anchored round's own
estimate keeps its component along ``u``: it was read at the anchor, where ``x`` moved.
Measured on the benchmark's d = 400 sphere (top-3), this projection lowered f/f0 six-fold.

Path of moves (a rank-one metric, state version 4). Every move adds its unit direction to a
path ``p <- c p + sqrt(1 - c**2) move / |move|`` (``c`` = :data:`PATH_DECAY`; moves in random
directions keep ``E|p|**2 = 1``, moves that keep a direction lengthen it toward ~10), and the
perturbations are stretched along it: ``xi = A D z`` with ``A = I + (a - 1) v v^T``,
``v = p / |p|``, ``a = min(|p|, MAX_PATH_STRETCH)`` once ``|p| > 1``. The estimator is then
unbiased for the gradient preconditioned by ``(A D)^2`` (the argument above, in the variable
``y = (A D)^-1 x``). This is CMA-ES's rank-one update along its evolution path (Hansen 2016) in
the one form a ranking-only line search can afford: on an ill-conditioned quadratic successive
line-search moves zig-zag across the steep directions and agree along the flat ones, so the
path points along the flat valley and the stretch lets the estimate (and the next trials) move
along it. It needs no perturbation wider than the step, unlike the diagonal metric (whose
warm-up widens them to twice the step, where top-3 answers rarely rank them), so the verified
schedule uses the path instead of the diagonal metric by default (``adapt_metric=True`` still
adds it). Measured (``bench optimizer``, 3 seeds): f/f0 on the d = 100 rotated quadratic
2.2e-3 -> 6.0e-4 (full) and 4.8e-3 -> 9.2e-4 (top-3), on the axis-aligned one 8.6e-4 with top-3
(the diagonal metric gave 3.7e-4) and the top-3 d = 400 sphere 5.5e-4 -> 8.4e-5. Campaigns of
10-20 rounds are nearly unaffected: the path needs tens of steady moves to exceed length 1.

References
----------
Tang, Z., Rybin, D. & Chang, T.-H. (2024). Zeroth-order optimization meets human feedback:
provable learning via ranking oracles. *ICLR* (arXiv 2303.03751).
Hansen, N. (2016). The CMA evolution strategy: a tutorial. arXiv 1604.00772.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.optimizer.estimators import dag_weights, preference_weights
from rankloop.core.optimizer.noise import reproducible_permutation
from rankloop.core.optimizer.parts import OptimizerState
from rankloop.core.optimizer.path import update_path

VERIFIED = "verified"
#: Layouts of a verified round: perturbations around the anchor (new optimizers, state
#: version 4) or around the centre (version 3 states continue with it). Part of the state, not
#: an option: it records which round a campaign runs, and no owner needs to choose it.
ANCHORED, CENTRED = "anchored", "centred"
LAYOUTS = (ANCHORED, CENTRED)

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
    """Roles of the unshuffled points of a verified round: centre, trials, perturbations.

    ``anchored``: the perturbations lie around the shortest trial (the *anchor*) instead of the
    centre, and the estimator reads the anchor and the perturbations; ``perturbation_moves``:
    ``x`` may also move to a perturbation the crowd ranked above the centre.
    """

    trials: int
    perturbations: int
    anchored: bool = False
    perturbation_moves: bool = False

    @property
    def size(self) -> int:
        return 1 + self.trials + self.perturbations

    @property
    def centre(self) -> int:
        return 0

    def trial(self, j: int) -> int:
        return 1 + j

    @property
    def base(self) -> int:
        """The point the perturbations lie around (``xi = 0``): the anchor, or the centre."""
        return self.trials if self.anchored and self.trials > 0 else 0

    @property
    def estimator_items(self) -> list[int]:
        """The base point and the perturbations: the points the estimator reads."""
        return [self.base, *range(1 + self.trials, self.size)]

    @property
    def move_items(self) -> list[int]:
        """The centre first, then the points ``x`` may move to (the centre = stay)."""
        last = self.size if self.perturbation_moves else 1 + self.trials
        return list(range(last))

    def label(self, index: int) -> str:
        if index == 0:
            return CENTRE
        if index <= self.trials:
            return f"step{index - 1}"
        return "perturbation"


def layout(
    m: int,
    round_number: int,
    has_direction: bool,
    anchored: bool = False,
    perturbation_moves: bool = False,
) -> Layout:
    """How many trials and perturbations a round of ``m`` points shows, and their roles.

    Two trials from ``m = 6`` on, one below; none before there is a direction. With ``m = 2``
    the rounds alternate between one perturbation (odd rounds show the trial). ``anchored``
    and ``perturbation_moves`` only matter once there is a trial (see :class:`Layout`).
    """
    if not has_direction:
        trials = 0
    elif m >= 6:
        trials = 2
    elif m >= 3:
        trials = 1
    else:
        trials = round_number % 2
    anchored = anchored and trials > 0
    return Layout(
        trials=trials,
        perturbations=m - 1 - trials,
        anchored=anchored,
        perturbation_moves=anchored and perturbation_moves,
    )


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
    return chosen_among_order(order, lay.move_items)


def chosen_among_order(order: Sequence[int], items: Sequence[int]) -> int | None:
    """:func:`chosen_from_order` over ``items`` (the centre first, then the points ``x`` may
    move to, in any numbering ``order`` shares): the coordinator's settle rule
    (:mod:`rankloop.core.settle`) reads the same rule in displayed positions."""
    candidates = set(items)
    for item in order:
        if item in candidates:
            return int(item)
    return None


def chosen_from_preferences(w: np.ndarray, lay: Layout) -> int | None:
    """The trial with the most net wins among the candidates that beats the centre pairwise,
    the centre when none does, ``None`` when ``W`` says nothing about any candidate."""
    return chosen_among_preferences(w, lay.move_items)


def chosen_among_preferences(w: np.ndarray, items: Sequence[int]) -> int | None:
    """:func:`chosen_from_preferences` over ``items`` (the centre first, then the points ``x``
    may move to, indices into ``w``)."""
    items = list(items)
    sub = w[np.ix_(items, items)]
    if float(sub.sum()) <= 0.0:
        return None
    centre = items[0]
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
    # A perturbation lies around the anchor, the shortest trial: for the step it counts as that.
    taken = float(steps[min(chosen, lay.trials) - 1])
    if lay.trials == 1:  # one trial at eta: grow a little on success (a 2/3 success rule)
        return eta * GROW_ONE_TRIAL, taken
    # The longest trial won: the optimum lies further, next round tries twice as far again.
    return (taken if chosen == lay.trial(0) else eta), taken


def settled(chosen: int, lay: Layout) -> bool:
    """Whether the move ends the line search along ``u``: a trial won, and not the longest
    of several (which says the optimum lies further along ``u``)."""
    return chosen != lay.centre and not (lay.trials > 1 and chosen == lay.trial(0))


def current_layout(state: OptimizerState) -> Layout:
    """The layout of the state's next (or pending) verified round."""
    has_direction = bool(np.any(state.direction_sum))
    anchored = state.layout == ANCHORED
    # A perturbation is a move candidate only while it lies within a step of the anchor (a
    # move to it is then a step along u, give or take a little): while a learnt metric warms
    # up, perturbations widen to twice the step and a move to one would be a random jump.
    near = state.radius() * math.sqrt(state.x.size) <= state.step
    return layout(state.m, state.round, has_direction, anchored, near)


def display(state: OptimizerState) -> np.ndarray:
    """Unshuffled point shown at each position of the state's verified round."""
    return reproducible_permutation(state.seed, state.round, state.m)


def shown_move_items(state: OptimizerState) -> list[int]:
    """The displayed positions of the state's verified round's move candidates, the centre
    first (:attr:`Layout.move_items`, shuffled as shown): what the coordinator needs to know
    which decision a round's rankings feed (:mod:`rankloop.core.settle`)."""
    shown = display(state)
    where = {int(item): position for position, item in enumerate(shown)}
    return [where[item] for item in current_layout(state).move_items]


def shown_points(state: OptimizerState) -> np.ndarray:
    """The round's points, flat, in the order they are shown."""
    return verified_points(state)[display(state)]


def trial_points(state: OptimizerState, lay: Layout) -> np.ndarray:
    steps = trial_steps(state.step, lay.trials)
    points = state.x + steps[:, None] * state.search_direction()[None, :]
    return state.to_shell(points) if state.options["shell"] else points


def verified_points(state: OptimizerState, perturbations: np.ndarray | None = None) -> np.ndarray:
    """Unshuffled points: the centre, the trial steps (longest first), the perturbations
    (around the centre, or around the anchor in the anchored layout)."""
    lay = current_layout(state)
    if perturbations is None:
        perturbations = state.perturbations(state.round, lay.perturbations)
    trials = trial_points(state, lay)
    base = trials[-1] if lay.base != lay.centre else state.x
    around = base + state.radius() * perturbations
    if state.options["shell"]:
        around = state.to_shell(around)
    return np.vstack([state.x[None, :], trials, around])


def tell_verified(
    state: OptimizerState, order: list[int] | None, preferences: np.ndarray | None
) -> dict[str, Any]:
    """Update ``state`` from the ranking of its verified round (``order`` or ``preferences`` in
    shown positions); return the round's outcome for the stats (moved, picked_step, accepted,
    picked)."""
    lay = current_layout(state)
    shown = display(state)
    if order is not None:
        unshuffled = [int(shown[i]) for i in order]
        weights = estimator_weights_from_order(unshuffled, lay)
        chosen = chosen_from_order(unshuffled, lay)
        ranked = sum(i > lay.trials for i in unshuffled)  # perturbations ranked
    else:
        assert preferences is not None
        w = np.empty_like(preferences)
        w[np.ix_(shown, shown)] = preferences
        weights = estimator_weights_from_preferences(w, lay)
        chosen = chosen_from_preferences(w, lay)
        ranked = state.m
    estimate = np.zeros_like(state.x)
    perturbations = state.perturbations(state.round, lay.perturbations)
    if weights is not None and lay.perturbations > 0:
        estimate = weights[1:] @ perturbations  # the base point's xi is 0
        if state.options["adapt_metric"]:
            state.adapt_metric(weights[1:], ranked, lay.perturbations)
    moved = 0.0
    memory = state.direction_sum * DIRECTION_MEMORY
    if chosen is not None and chosen != lay.centre:
        target = verified_points(state, perturbations)[chosen]
        moved = float(np.linalg.norm(target - state.x))
        if state.path is not None and moved > 0.0:
            state.path = update_path(state.path, target - state.x)
        state.x = target.copy()
        if settled(chosen, lay):
            # A line search along u that stopped short of its longest trial leaves (on a
            # quadratic, nearly) no slope along u: what the memory and this estimate say
            # about u is spent; what they say about the other directions still holds.
            u = state.search_direction()
            memory -= (memory @ u) * u
            if not lay.anchored:  # an anchored estimate was read at the new point already
                estimate -= (estimate @ u) * u
    state.direction_sum = memory + estimate
    state.direction_count = state.direction_count * DIRECTION_MEMORY + 1.0
    state.step, picked_step = next_step(state.step, chosen, lay)
    label = "none" if chosen is None else lay.label(chosen)
    return {
        "moved": moved,
        "picked_step": picked_step,
        "accepted": int(moved > 0),
        "picked": label,
    }
