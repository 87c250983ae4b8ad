"""The optimizer's saved state: versions, the upgrade from older versions, and ``.npz`` bytes.

A :meth:`RankSGD.state_dict` is an explicit, versioned dictionary of plain values and a few
arrays (never a pickle); :func:`dumps_state` stores it as ``.npz`` (the arrays, plus a JSON
header for the rest) and :func:`loads_state` reads it back, refusing damaged bytes and unknown
versions. Version 2 added the learnt metric, version 3 the round schedule and the pixel effect,
version 4 the anchored layout of a verified round, version 5 the visible floor that follows
the crowd's agreement; versions 1 to 4 still load and continue exactly as they would have
before (:func:`upgrade_state`).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from rankloop.core.errors import CorruptedObject, InvalidInput
from rankloop.core.optimizer.parts import OptimizerState
from rankloop.core.optimizer.verified import CENTRED, LAYOUTS

STATE_VERSION = 5
#: Versions 1 (no metric), 2 (no schedule, no pixel effect), 3 (verified rounds centred on
#: the current point) and 4 (a fixed visible floor) still load, and continue exactly as they
#: would have before.
SUPPORTED_STATE_VERSIONS = (1, 2, 3, 4, 5)


def upgrade_state(state: dict[str, Any]) -> dict[str, Any]:
    """Upgrade an older state to the current version, keeping the behaviour it had.

    1 -> 2: an identity metric that never adapts, the fixed radius ratio it had.
    2 -> 3: the two-phase schedule (the only one then), no visibility band, no pixel effect.
    3 -> 4: verified rounds keep the layout they had, perturbations around the current point.
    4 -> 5: the visible floor stays ``min_visible`` (the agreement is not followed).
    """
    if state["version"] == 1:
        options = {**state["options"], "adapt_metric": False, "metric_rate": 0.0}
        state = {**state, "version": 2, "options": options, "scales": None}
    if state["version"] == 2:
        options = {
            **state["options"],
            "schedule": "two_phase",
            "min_visible": 0.0,
            "max_visible": 0.0,
        }
        state = {**state, "version": 3, "options": options}
        state.setdefault("pixel_effect", None)
        state.setdefault("noted_effect", None)
    if state["version"] == 3:
        state = {**state, "version": 4, "layout": CENTRED, "path": None}
    if state["version"] == 4:
        options = {**state["options"], "follow_agreement": False}
        state = {**state, "version": 5, "options": options}
        state.setdefault("visible_floor", None)
        state.setdefault("noted_agreement", None)
    return state


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


class SavedState(NamedTuple):
    """A state dictionary read back: the optimizer's state, and its ask/tell protocol's."""

    state: OptimizerState
    #: An ask is out and awaits its tell.
    pending: bool
    #: The stats after the last tell.
    stats: dict[str, Any]


def write_state_dict(state: OptimizerState, pending: bool, stats: dict[str, Any]) -> dict[str, Any]:
    """The current version's dictionary of ``state`` (arrays copied), the protocol's ``pending``
    flag and ``stats``: plain values and a few flat arrays of ``d`` numbers.

    The arrays are the point, the averaged direction, the diagonal metric (``None`` when it is
    not learnt), the last gradient round's best point (``None`` after a line search) and the
    path of moves (``None`` for the two-phase schedule).
    """
    return {
        "version": STATE_VERSION,
        "shape": list(state.shape),
        "m": state.m,
        "k": state.k,
        "seed": state.seed,
        "options": dict(state.options),
        "x": state.x.copy(),
        "direction_sum": state.direction_sum.copy(),
        "direction_count": state.direction_count,
        # None while the metric is off (shell campaigns): their states stay as small as before.
        "scales": state.scales.copy() if state.options["adapt_metric"] else None,
        "step": state.step,
        "round": state.round,
        "gradient_streak": state.gradient_streak,
        "winner": None if state.winner is None else state.winner.copy(),
        "pending": pending,
        "stats": dict(stats),
        "pixel_effect": state.pixel_effect,
        "noted_effect": state.noted_effect,
        "layout": state.layout,
        "path": None if state.path is None else state.path.copy(),
        "visible_floor": state.visible_floor,
        "noted_agreement": state.noted_agreement,
    }


def read_state_dict(state: Mapping[str, Any]) -> SavedState:
    """A :meth:`RankSGD.state_dict` of any supported version, as the current version's state.

    Values come back typed (``int``, ``float``, flat ``float64`` arrays, ``tuple`` shape) and
    copied, never sharing memory with ``state``; a missing metric (version 1, or a campaign
    without one) becomes the identity.

    Raises
    ------
    InvalidInput
        An unsupported version, a missing or malformed field, arrays that do not match the shape.
    """
    try:
        if state["version"] not in SUPPORTED_STATE_VERSIONS:
            raise InvalidInput(
                f"optimizer state version {state['version']!r} is not supported "
                f"(this code reads versions {list(SUPPORTED_STATE_VERSIONS)})"
            )
        state = upgrade_state(dict(state))
        shape = tuple(int(s) for s in state["shape"])
        x = np.asarray(state["x"], dtype=np.float64).reshape(-1)
        fields: dict[str, Any] = {
            "shape": shape,
            "m": int(state["m"]),
            "k": None if state["k"] is None else int(state["k"]),
            "seed": int(state["seed"]),
            "options": dict(state["options"]),
            "x": x.copy(),
            # np.array copies: the optimizer updates its direction in place, and must not
            # write into the caller's dictionary.
            "direction_sum": np.array(state["direction_sum"], dtype=np.float64).reshape(-1),
            "direction_count": float(state["direction_count"]),
            "scales": (
                np.ones_like(x)
                if state["scales"] is None
                else np.array(state["scales"], np.float64).reshape(-1)
            ),
            "step": float(state["step"]),
            "round": int(state["round"]),
            "gradient_streak": int(state["gradient_streak"]),
            "winner": (
                None
                if state["winner"] is None
                else np.array(state["winner"], np.float64).reshape(-1)
            ),
            "pending": bool(state["pending"]),
            "stats": dict(state["stats"]),
            "pixel_effect": _optional_float(state["pixel_effect"]),
            "noted_effect": _optional_float(state["noted_effect"]),
            "layout": str(state["layout"]),
            "path": (
                None if state["path"] is None else np.array(state["path"], np.float64).reshape(-1)
            ),
            "visible_floor": _optional_float(state["visible_floor"]),
            "noted_agreement": _optional_float(state["noted_agreement"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"not a RankSGD state dictionary: {exc!r}") from exc
    if fields["layout"] not in LAYOUTS:
        raise InvalidInput(f"verified-round layout must be one of {list(LAYOUTS)}")
    if fields["path"] is not None and fields["path"].size != x.size:
        raise InvalidInput("RankSGD state arrays do not match its shape")
    if x.size != math.prod(shape) or not (
        fields["direction_sum"].size == fields["scales"].size == x.size
    ):
        raise InvalidInput("RankSGD state arrays do not match its shape")
    pending = fields.pop("pending")
    stats = fields.pop("stats")
    return SavedState(state=OptimizerState(**fields), pending=pending, stats=stats)


def dumps_state(state: dict[str, Any]) -> bytes:
    """Serialise a :meth:`RankSGD.state_dict` as ``.npz``: arrays plus a JSON header."""
    arrays = {key: value for key, value in state.items() if isinstance(value, np.ndarray)}
    header = {key: value for key, value in state.items() if not isinstance(value, np.ndarray)}
    header["array_keys"] = sorted(arrays)
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    buffer = io.BytesIO()
    # numpy's stubs read **arrays as possibly holding its allow_pickle flag; the keys are state's.
    header_array = np.frombuffer(header_bytes, dtype=np.uint8)
    np.savez(buffer, __header__=header_array, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def loads_state(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`dumps_state`; raises :class:`CorruptedObject` on damaged bytes."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            header = json.loads(archive["__header__"].tobytes().decode("utf-8"))
            array_keys = header.pop("array_keys")
            state = dict(header)
            for key in array_keys:
                state[key] = archive[key].copy()
    except Exception as exc:  # zip, JSON, key and dtype errors all mean the same thing here
        raise CorruptedObject(f"optimizer state could not be decoded: {exc!r}") from exc
    if not isinstance(state.get("version"), int):
        raise CorruptedObject("optimizer state has no integer 'version' in its header")
    if state["version"] not in SUPPORTED_STATE_VERSIONS:
        raise CorruptedObject(
            f"optimizer state version {state['version']} is not supported "
            f"(expected one of {list(SUPPORTED_STATE_VERSIONS)})"
        )
    return state
