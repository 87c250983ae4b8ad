"""The coordinator's JSON: strict in, always valid out.

In: NaN, Infinity and numbers too large for a float (``1e999``) are refused, as JSON itself
does (Python's parser accepts them, and one of them stored in a campaign's settings broke every
reader of it), and nesting too deep for the parser is a plain decoding error (a 400), not a
``RecursionError``. Out: a non-finite float, which valid JSON cannot carry, is written as
``null`` (what browsers' ``JSON.stringify`` does), so a response always parses.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask.json.provider import DefaultJSONProvider


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range: send a finite number")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: send a finite number")


def loads(data: str | bytes) -> Any:
    """Parse ``data``; a :class:`ValueError` names what is wrong."""
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _finite_only(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_only(v) for v in value]
    return value


class StrictJSONProvider(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return super().dumps(obj, allow_nan=False, **kwargs)
        except ValueError:  # a non-finite float somewhere: written as null
            return super().dumps(_finite_only(obj), allow_nan=False, **kwargs)
