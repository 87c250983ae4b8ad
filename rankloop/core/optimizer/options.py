"""RankSGD's static parameters: the keyword options, their defaults and their validation.

Kept apart from the mutable state (as pycma keeps its options apart from the search state): the
options are resolved once, stored with the state, and never change during a campaign.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rankloop.core.errors import InvalidInput

#: Round schedules: every round verified (estimate and a ranked move), or the authors' loop of
#: gradient rounds and line searches.
SCHEDULES = ("verified", "two_phase")

DEFAULT_OPTIONS: dict[str, Any] = {
    # "verified": every round shows the current point, trial steps and perturbations, and moves
    # only to a trial the crowd ranked above the current point (verified.py). "two_phase": the
    # authors' gradient rounds and line searches (the options below marked two_phase).
    "schedule": "verified",
    # Initial line-search step (a distance in x); None: derived from x0 (a tenth of |x0|).
    "step": None,
    # Smoothing radius as a fraction of the step: perturbations have norm ~ radius_ratio * step.
    # None: 0.2 (a sharp gradient estimate), widening to 2.0 while a learnt metric warms up
    # (selection must feel the curvature the metric learns from); see metric.py.
    "radius_ratio": None,
    # Lower bound on the perturbation norm (e.g. so that humans still see a difference).
    "min_radius": 0.0,
    # two_phase: gradient rounds before each line search.
    "gradient_rounds": 3,
    # Share of the averaged direction kept after a move (0: reset, the authors' rule). Keeping
    # some did not help in the benchmark: the step after a line search is tuned to that line.
    "momentum": 0.0,
    # two_phase: also step along the averaged direction after the gradient rounds (SGD);
    # line-search rounds then calibrate the step. False: move only in line searches (the
    # authors' loop).
    "sgd_moves": True,
    # Keep every point on the sphere of radius sqrt(d) (Gaussian latents of diffusion models).
    "shell": False,
    # Learn a diagonal metric for the perturbations from the rankings (sep-CMA's rank-mu
    # update); None: on for the two_phase schedule unless shell (a latent's coordinates should
    # stay exchangeable); the verified schedule learns a rank-one metric along its moves instead.
    "adapt_metric": None,
    # Learning rate of that metric, in units of sep-CMA-ES's rank-mu rate for the same d and m.
    "metric_rate": 10.0,
    # Visibility band of a perturbation, as the RMS pixel change over the full range (0..1), used
    # once the generator's pixel effect is known (RankSGD.note_pixel_effect): perturbations stay
    # between the two, steps at least the lower one. 0 turns the bound off.
    "min_visible": 0.03,
    "max_visible": 0.12,
    # Move the band's floor with how consistently the crowd ranks (visibility.py): wider when
    # people could not tell the candidates apart, back toward min_visible when they agree.
    "follow_agreement": True,
}


def resolve_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate RankSGD's keyword options and fill in the defaults.

    Returns
    -------
    dict
        Every option of :data:`DEFAULT_OPTIONS`, as plain ``float``/``int``/``bool`` (``step``
        and ``radius_ratio`` may stay ``None``), with ``adapt_metric`` resolved.

    Raises
    ------
    InvalidInput
        An unknown option name (the message names it and the known ones), a value that is not
        a number where one is expected, or a number out of its range.
    """
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise InvalidInput(
            f"unknown RankSGD option(s) {sorted(unknown)}; known: {sorted(DEFAULT_OPTIONS)}"
        )
    opts = {**DEFAULT_OPTIONS, **options}

    def number(name: str, kind: Callable[[Any], Any] = float) -> Any:
        try:
            return kind(opts[name])
        except (TypeError, ValueError):
            raise InvalidInput(f"RankSGD option {name}={opts[name]!r} is not a number") from None

    if number("gradient_rounds", int) < 1:
        raise InvalidInput("gradient_rounds must be >= 1")
    if not 0.0 <= number("momentum") < 1.0:
        raise InvalidInput("momentum must be in [0, 1)")
    # The verified schedule learns a rank-one metric along its path of moves instead (verified.py):
    # the diagonal one needs perturbations wider than the step, which top-k answers rarely rank.
    adapt_metric = (
        (not bool(opts["shell"]) and opts["schedule"] == "two_phase")
        if opts["adapt_metric"] is None
        else bool(opts["adapt_metric"])
    )
    if opts["radius_ratio"] is not None and number("radius_ratio") <= 0:
        raise InvalidInput("radius_ratio must be > 0")
    if not number("metric_rate") >= 0:
        raise InvalidInput("metric_rate must be >= 0")
    if opts["step"] is not None and not number("step") > 0:
        raise InvalidInput("step must be > 0 (a distance in x), or None to derive it from x0")
    if number("min_radius") < 0:
        raise InvalidInput("min_radius must be >= 0")
    if opts["schedule"] not in SCHEDULES:
        raise InvalidInput(f"schedule must be one of {list(SCHEDULES)}, got {opts['schedule']!r}")
    if not 0.0 <= number("min_visible") <= number("max_visible"):
        raise InvalidInput("min_visible and max_visible must satisfy 0 <= min <= max")
    return {
        "step": None if opts["step"] is None else float(opts["step"]),
        "radius_ratio": None if opts["radius_ratio"] is None else float(opts["radius_ratio"]),
        "min_radius": float(opts["min_radius"]),
        "gradient_rounds": int(opts["gradient_rounds"]),
        "momentum": float(opts["momentum"]),
        "sgd_moves": bool(opts["sgd_moves"]),
        "shell": bool(opts["shell"]),
        "adapt_metric": adapt_metric,
        "metric_rate": float(opts["metric_rate"]),
        "schedule": str(opts["schedule"]),
        "min_visible": float(opts["min_visible"]),
        "max_visible": float(opts["max_visible"]),
        "follow_agreement": bool(opts["follow_agreement"]),
    }
