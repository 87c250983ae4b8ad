"""RankSGD: ZO-RankSGD's ask/tell loop (see the package). It owns an
:class:`~rankloop.core.optimizer.parts.OptimizerState` and adds the protocol: the pending
proposal, the stats, the saved state. The rounds of each schedule live in verified.py and
two_phase.py, as functions of that state; state.py writes and reads the versioned dictionary.

References
----------
Tang, Z., Rybin, D. & Chang, T.-H. (2024). Zeroth-order optimization meets human feedback:
provable learning via ranking oracles. *ICLR* (arXiv 2303.03751).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankloop.core.errors import InvalidInput, ProtocolError
from rankloop.core.optimizer import two_phase, verified
from rankloop.core.optimizer.estimators import validate_order, validate_preferences
from rankloop.core.optimizer.options import resolve_options
from rankloop.core.optimizer.parts import OptimizerState, initial_step, to_shell
from rankloop.core.optimizer.state import read_state_dict, write_state_dict
from rankloop.core.optimizer.verified import ANCHORED, VERIFIED, Layout
from rankloop.core.optimizer.visibility import chance_corrected


@dataclass(frozen=True)
class Proposal:
    """One round's points to be ranked.

    Attributes
    ----------
    points : ndarray, shape (n, *x0.shape)
        What the annotators see, in this order; ``tell`` takes indices into it.
    kind : str
        ``"gradient"`` or ``"line_search"``.
    round : int
        The round number this proposal belongs to (0-based).
    """

    points: np.ndarray
    kind: str
    round: int


class RankSGD:
    """ZO-RankSGD with gradient and line-search rounds and self-adapting step and radius.

    Parameters
    ----------
    x0 : array_like
        Starting point, any shape; the optimizer works on its flattened copy.
    m : int
        Perturbations per gradient round (points shown per round).
    k : int or None
        How many top items annotators are asked to rank (None: full rankings). Informational:
        ``tell`` accepts any non-empty best-first prefix.
    seed : int
        Selects the perturbations and shuffles: round ``t`` draws from ``(seed, t)``.
    **options
        ``step``: initial step, a distance (default ``0.1 * |x0|``, or ``0.1 * sqrt(d)`` if
        ``x0 = 0``); ``radius_ratio``: perturbation norm over the step (default: 0.2, widening
        to 2 as the metric warms up); ``adapt_metric``: learn a diagonal metric (default: for the
        two-phase schedule, unless ``shell``; verified rounds stretch their perturbations along
        the path of moves instead); ``metric_rate``: its rate in units of sep-CMA-ES's (10); ``min_radius``:
        floor on the perturbation norm, e.g. so that people still see a difference (0);
        ``gradient_rounds``: gradient rounds per line search (3); ``sgd_moves``: move after the
        gradient rounds too (True); ``momentum``: share of the averaged direction kept after a
        move (0); ``shell``: keep every point at norm ``sqrt(d)``, for Gaussian latents (False);
        ``schedule``: ``"verified"`` (default) or ``"two_phase"`` (the options ``gradient_rounds``,
        ``sgd_moves`` and ``momentum`` are the two-phase loop's); ``min_visible`` and
        ``max_visible``: the RMS pixel change (0..1) that perturbations keep once the pixel
        effect is known (0.03, 0.12; see :meth:`note_pixel_effect`); ``follow_agreement``: move
        the band's floor with the crowd's agreement (True; see :meth:`note_agreement`).

    Raises
    ------
    InvalidInput
        A bad ``x0``, ``m``, ``k`` or ``seed``; an unknown option (the message names it and the
        known ones); an option value that is not a number, or is out of range.

    Notes
    -----
    ``ask`` before every ``tell``; asking again before ``tell`` returns the same proposal, so a
    redelivered task renders the same images.
    """

    def __init__(self, x0: Any, m: int = 8, k: int | None = None, seed: int = 0, **options: Any):
        x0 = np.asarray(x0, dtype=np.float64)
        options = resolve_options(options)
        if x0.size == 0 or not np.all(np.isfinite(x0)):
            raise InvalidInput("x0 must be a non-empty array of finite numbers")
        if not isinstance(m, int | np.integer) or m < 2:
            raise InvalidInput(f"m must be an integer >= 2 (points per round), got {m!r}")
        if k is not None and (not isinstance(k, int | np.integer) or not 1 <= k <= m):
            raise InvalidInput(
                f"k must be None (full rankings) or an integer in 1..m={m}, got {k!r}"
            )
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")

        shape = tuple(x0.shape)
        dim = math.prod(shape)
        x = x0.reshape(-1).copy()
        if options["shell"]:
            x = to_shell(x, dim)
        step = options["step"]
        self._state = OptimizerState(
            shape=shape,
            m=int(m),
            k=None if k is None else int(k),
            seed=int(seed),
            options=options,
            x=x,
            direction_sum=np.zeros_like(x),
            direction_count=0.0,
            scales=np.ones_like(x),
            # Path of the verified rounds' moves (verified.py): perturbations stretch along it.
            path=np.zeros_like(x) if options["schedule"] == VERIFIED else None,
            step=float(step) if step is not None else initial_step(x, dim),
            round=0,
            gradient_streak=0,
            winner=None,
            # RMS pixel change (0..1) per unit of latent distance, measured at render time
            # (None: unknown); a newly noted value waits for the pending round's tell, so a
            # redelivered task still renders the points it rendered before.
            pixel_effect=None,
            noted_effect=None,
            # Verified rounds show their perturbations around the anchor (version 3 states:
            # "centred").
            layout=ANCHORED,
        )
        self._pending = False  # an ask is out and awaits its tell
        self._proposal: Proposal | None = None
        self._stats: dict[str, Any] = {}
        self._update_stats(
            kind="none", moved=0.0, picked_step=0.0, accepted=0, picked="none", crowd_agreement=None
        )

    # ------------------------------------------------------------------ public API
    @property
    def x(self) -> np.ndarray:
        """Current best point, shape of ``x0`` (a copy)."""
        return self._state.x.reshape(self._state.shape).copy()

    @property
    def round(self) -> int:
        """Number of completed rounds (the next proposal's round)."""
        return self._state.round

    @property
    def stats(self) -> dict[str, Any]:
        """Plain scalars for dashboards: step, radius, moved, picked step, kind, ..."""
        return dict(self._stats)

    @property
    def m(self) -> int:
        return self._state.m

    @property
    def k(self) -> int | None:
        return self._state.k

    @property
    def next_kind(self) -> str:
        """Kind of the next proposal."""
        if self._state.options["schedule"] == VERIFIED:
            return VERIFIED
        return two_phase.next_kind(self._state)

    def ask(self) -> Proposal:
        """Return this round's points; asking again before ``tell`` returns the same proposal."""
        if self._pending and self._proposal is not None:
            return self._proposal
        kind = self.next_kind
        if kind == VERIFIED:
            points = verified.shown_points(self._state)
        else:
            points = two_phase.shown_points(self._state, kind)
        points = points.reshape((len(points), *self._state.shape))
        points.setflags(write=False)
        self._proposal = Proposal(points=points, kind=kind, round=self._state.round)
        self._pending = True
        return self._proposal

    def move_items(self) -> list[int] | None:
        """The asked round's points ``x`` may move to, as indices into the proposal's points,
        the current point first (it staying is a decision too); ``None`` for the two-phase
        schedule, whose gradient rounds move nothing the crowd is asked about. Call after
        :meth:`ask`."""
        if self.next_kind != VERIFIED:
            return None
        return verified.shown_move_items(self._state)

    def tell(self, order: Sequence[int] | None = None, *, preferences: Any = None) -> None:
        """Feed back this round's ranking.

        Parameters
        ----------
        order : sequence of int, optional
            Best-first indices into the proposal's points; a top-k prefix is allowed.
        preferences : array_like (n, n), optional
            Instead of ``order``: ``W[a, b] >= 0`` weighs the evidence that point ``a`` is better
            than point ``b``.
        """
        if not self._pending:
            raise ProtocolError(
                "tell() without a pending ask(): call ask() first, "
                "then tell() exactly once per round"
            )
        proposal = self.ask()
        n = len(proposal.points)
        if (order is None) == (preferences is None):
            raise InvalidInput(
                "pass exactly one of order= (best-first indices) or preferences= (W)"
            )
        if order is not None:
            order = validate_order(order, n)
        else:
            preferences = validate_preferences(preferences, n)
        if proposal.kind == VERIFIED:
            outcome = verified.tell_verified(self._state, order, preferences)
        else:
            outcome = two_phase.tell_two_phase(self._state, proposal.kind, order, preferences, n)
        rho = self._state.noted_agreement  # the crowd's agreement on this round, if noted
        self._state.end_round()
        self._pending = False
        self._proposal = None
        self._update_stats(kind=proposal.kind, crowd_agreement=rho, **outcome)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """A versioned dictionary of plain values and a few arrays of ``d`` numbers (exact).

        The arrays are the point, the averaged direction, the diagonal metric (``None`` when
        it is not learnt), the last gradient round's best point (``None`` after a line
        search) and the verified rounds' path of moves (``None`` for the two-phase schedule).
        """
        return write_state_dict(self._state, self._pending, self._stats)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RankSGD:
        """Rebuild an optimizer from :meth:`state_dict` output of any supported version.

        Raises :class:`InvalidInput` for an unsupported version or a malformed dictionary.
        """
        saved = read_state_dict(state)
        opt = cls.__new__(cls)
        opt._state = saved.state
        opt._pending = saved.pending
        opt._proposal = None
        opt._stats = saved.stats
        return opt

    def note_pixel_effect(self, effect: float) -> None:
        """Record the generator's pixel-space effect measured on this round's images.

        ``effect`` is the RMS pixel change (values scaled to 0..1) per unit of latent distance
        (:func:`rankloop.core.round_step.pixel_effect`). From the next round on, perturbations
        keep an RMS pixel change within ``[min_visible, max_visible]`` and steps at least
        ``min_visible``: a change nobody can see is a wasted round, a new picture is no longer
        a local comparison. Several notes before one tell keep the last.
        """
        effect = float(effect)
        if not (math.isfinite(effect) and effect > 0.0):
            raise InvalidInput(f"pixel effect must be a positive finite number, got {effect!r}")
        if self._state.pixel_effect is not None:  # smooth round-to-round variation (geometric mean)
            effect = math.sqrt(effect * self._state.pixel_effect)
        self._state.noted_effect = effect

    def note_agreement(self, agreement: float | None, raters: int | None) -> None:
        """Record how consistently the crowd ranked this round: Kendall's W of its ``raters``
        rankings (the consensus's ``agreement``). At this round's tell the visibility band's
        floor widens when the agreement is near chance (people could not tell the candidates
        apart) and narrows when it is high (:mod:`~rankloop.core.optimizer.visibility`); the
        floor is in the stats (``visible_floor``, with ``crowd_agreement``, the chance-corrected
        agreement). Under two rankings say nothing."""
        self._state.noted_agreement = chance_corrected(agreement, raters)

    # ------------------------------------------------------------------ internals
    def _layout(self) -> Layout:
        """The layout of the next (or pending) verified round."""
        return verified.current_layout(self._state)

    def _display(self) -> np.ndarray:
        """Unshuffled point shown at each position of the next (or pending) verified round."""
        return verified.display(self._state)

    def _update_stats(self, **values: Any) -> None:
        state = self._state
        self._stats = {
            "round": state.round,
            "step": float(state.step),
            "radius": float(state.radius() * math.sqrt(state.dim)),
            # Spread of the learnt metric: the standard deviation of log(scales) (0: isotropic).
            "metric_spread": float(np.std(np.log(state.scales))),
            "estimates_averaged": float(state.direction_count),
            "x_norm": float(np.linalg.norm(state.x)),
            # The smallest RMS pixel change of the next perturbations and steps (visibility.py).
            "visible_floor": float(state.floor()),
            **{k: (float(v) if isinstance(v, float) else v) for k, v in values.items()},
        }
