"""The line-search round: its candidates, their shuffled display order, and the step rule.

A line search shows points ``x + eta * 2**(1 - i) * u`` (``i = 0 .. max(m - 2, 2) - 1``) along
the unit descent direction ``u``, plus the best point of the last gradient round and the current
best, shuffled reproducibly from ``(seed, round)``. What wins sets the step ``eta``: the longest
step won -> four times the old step; another step won -> that step; staying at the current best
(or the gradient round's perturbation) won -> halve. This replaces the authors' fixed schedule
(Tang, Rybin & Chang, ICLR 2024, arXiv 2303.03751) so that the step needs no tuning.
"""

from __future__ import annotations

import numpy as np

from rankloop.core.optimizer.noise import reproducible_permutation


def step_factors(m: int) -> np.ndarray:
    """The candidate steps as multiples of ``eta``, longest first: ``2, 1, 1/2, ...``."""
    steps = max(m - 2, 2)
    return 2.0 ** (1 - np.arange(steps, dtype=np.float64))


def candidate_labels(m: int) -> list[str]:
    """Names of the unshuffled candidates: ``step0, step1, ..., winner, best``."""
    steps = len(step_factors(m))
    return [f"step{i}" for i in range(steps)] + ["winner", "best"]


def display_order(seed: int, round_number: int, m: int) -> np.ndarray:
    """Candidate index shown at each position (from the pinned generator's shuffle stream)."""
    n = len(step_factors(m)) + 2
    return reproducible_permutation(seed, round_number, n)


def next_step(step: float, label: str, m: int) -> tuple[float, float]:
    """The step after the candidate ``label`` won, and the winning step's length (0 if none)."""
    if label.startswith("step"):
        i = int(label[4:])
        picked_step = float(step * step_factors(m)[i])
        # Longest step won: the optimum lies further, grow; otherwise centre on the winner.
        return picked_step * (2.0 if i == 0 else 1.0), picked_step
    # "best": nothing beat staying, the steps were too long or the direction too noisy;
    # "winner": the gradient round's best perturbation beat every step.
    return step * 0.5, 0.0
