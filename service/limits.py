"""Rate limits on the annotator and recruitment endpoints, with the ``limits`` library (the
engine under Flask-Limiter) called directly: no hook on every other request, one storage round
trip per check at most.

Annotator endpoints (``RATELIMIT_ANNOTATOR``, per annotator token) are the hot path. By default
(``RATELIMIT_ANNOTATOR_SCOPE=process``) each process keeps its own token buckets in memory: a
check costs microseconds and no round trip, and an annotator gets at most the limit from each
process (with W gunicorn processes, at most W times the limit in all). That is what the limit
is for: a runaway script or a stuck retry loop is cut off at once. ``shared`` counts in a fixed
window in ``RATELIMIT_STORAGE_URI`` instead (``redis://...`` in production): exact across
processes, one Redis round trip per request.

The recruitment link (``RATELIMIT_JOIN``, per address) always counts in that shared storage:
it creates annotators, and it is not on the hot path. When the storage cannot be reached the
request goes through and the error is logged: a limit guards capacity, not correctness.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

ANNOTATOR_ENDPOINTS = ("tasks.next_task", "tasks.submit_ranking", "annotators.me")
JOIN_ENDPOINTS = ("annotators.join",)


class TokenBuckets:
    """Per-key token buckets: ``amount`` requests at once, refilled at ``amount`` per
    ``period``; thread-safe; the least recently seen keys are forgotten past ``max_keys``
    (a forgotten key starts again with a full bucket)."""

    def __init__(self, amount: int, period_s: float, max_keys: int = 100_000) -> None:
        if amount < 1 or period_s <= 0:
            raise ValueError("a rate limit needs at least one request per positive period")
        self.amount = float(amount)
        self.per_second = amount / period_s
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one request for ``key``: 0.0 when allowed, else the seconds until it would be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.amount, now))
            tokens = min(self.amount, tokens + (now - last) * self.per_second)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.per_second
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait


def init_app(app: Flask) -> None:
    """Wrap the limited views (call after the blueprints are registered); one set of counters
    per app (tests build many apps)."""
    scope = app.config.get("RATELIMIT_ANNOTATOR_SCOPE", "process")
    if scope not in ("process", "shared"):
        raise ValueError(
            f"RATELIMIT_ANNOTATOR_SCOPE={scope!r}: use 'process' (in memory, per process) or "
            "'shared' (counted in RATELIMIT_STORAGE_URI)"
        )
    shared = SharedLimits(
        str(app.config.get("RATELIMIT_STORAGE_URI") or "memory://"),
        str(app.config.get("RATELIMIT_KEY_PREFIX") or ""),
    )
    app.extensions["rankloop_limits"] = shared
    annotator_item = parse(app.config["RATELIMIT_ANNOTATOR"])
    buckets = TokenBuckets(annotator_item.amount, float(annotator_item.get_expiry()))
    join_item = parse(app.config["RATELIMIT_JOIN"])

    def annotator_check() -> float:
        if scope == "process":
            return buckets.take(annotator_key())
        return shared.take(annotator_item, "annotator", annotator_key())

    def join_check() -> float:
        return shared.take(join_item, "join", f"ip:{request.remote_addr}")

    for endpoint in ANNOTATOR_ENDPOINTS:
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = _limited(view, annotator_check, "RATELIMIT_ANNOTATOR")
    for endpoint in JOIN_ENDPOINTS:
        app.view_functions[endpoint] = _limited(
            app.view_functions[endpoint], join_check, "RATELIMIT_JOIN"
        )


class SharedLimits:
    """Fixed-window counters in a ``limits`` storage (``memory://``, ``redis://``...)."""

    def __init__(self, uri: str, prefix: str = "") -> None:
        self.uri, self.prefix = uri, prefix
        self._strategy: FixedWindowRateLimiter | None = None
        self._lock = threading.Lock()

    def _limiter(self) -> FixedWindowRateLimiter:
        # Built on first use, in the serving process (after gunicorn's fork).
        with self._lock:
            if self._strategy is None:
                self._strategy = FixedWindowRateLimiter(storage_from_string(self.uri))
            return self._strategy

    def take(self, item: RateLimitItem, scope: str, key: str) -> float:
        """Count one request: 0.0 when allowed, else the seconds until the window resets."""
        try:
            limiter = self._limiter()
            if limiter.hit(item, self.prefix + scope, key):
                return 0.0
            reset = limiter.get_window_stats(item, self.prefix + scope, key).reset_time
        except Exception:  # the storage is down: let the request through, and say so
            current_app.logger.exception("rate limit storage %s unreachable", self.uri)
            return 0.0
        return max(1.0, reset - time.time())


def _limited(
    view: Callable[..., Any], check: Callable[[], float], setting: str
) -> Callable[..., Any]:
    @wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        if current_app.config.get("RATELIMIT_ENABLED", True):
            wait = check()
            if wait:
                raise TooManyRequests(
                    f"too many requests: at most {current_app.config[setting]}; retry later",
                    retry_after=math.ceil(wait),
                )
        return view(*args, **kwargs)

    return limited


def annotator_key() -> str:
    """Per annotator token when one is sent (many annotators may share one NAT address)."""
    header = request.headers.get("Authorization", "")
    if header:
        return "tok:" + hashlib.sha256(header.encode()).hexdigest()[:24]
    return f"ip:{request.remote_addr}"
