"""Rate limits on the annotator, owner and recruitment endpoints, and on failed
authentication, with the ``limits`` library (the engine under Flask-Limiter) called directly: no
hook on every other request, one storage round trip per check at most.

Annotator endpoints (``RATELIMIT_ANNOTATOR``, per annotator token) are the hot path. By default
(``RATELIMIT_ANNOTATOR_SCOPE=process``) each process keeps its own token buckets in memory: a
check costs microseconds and no round trip, and an annotator gets at most the limit from each
process (with W gunicorn processes, at most W times the limit in all). That is what the limit
is for: a runaway script or a stuck retry loop is cut off at once. ``shared`` counts in a fixed
window in ``RATELIMIT_STORAGE_URI`` instead (``redis://...`` in production): exact across
processes, one Redis round trip per request. Owner endpoints (``RATELIMIT_OWNER``, per owner
key) are counted the same way. Both key on the token as authentication reads it
(:func:`service.auth.parse_bearer`), so ``bearer x`` or extra spaces are the same bucket.

Failed authentication (``RATELIMIT_AUTH_FAILURES``, per client address, in each process): a
request whose token is unknown or malformed spends from its address's bucket, and once the
bucket is empty a further failure from that address answers 429 instead of 401 until it
refills. The credential is checked first and only failures count: a request with a valid owner
key or annotator token is never refused by this limit, so one guesser behind a lab's NAT does
not lock out everybody else behind it (each token still has its own limit above).

The recruitment link (``RATELIMIT_JOIN``, per address) always counts in the shared storage:
it creates annotators, and it is not on the hot path. When the storage cannot be reached the
request goes through and the error is logged: a limit guards capacity, not correctness.

Client addresses: behind ``PROXY_COUNT`` trusted reverse proxies, Werkzeug's ``ProxyFix`` takes
the address (and scheme, host, prefix) from their ``X-Forwarded-*`` headers, so participants
behind one proxy do not share one join limit; with 0 those headers are ignored (a client could
forge them).
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

from flask import Flask, Response, current_app, request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from rankloop.core.errors import Unauthorized
from service import join_pages
from service.auth import parse_bearer
from service.config import app_settings, settings_of

ANNOTATOR_ENDPOINTS = (
    "tasks.next_task",
    "tasks.submit_ranking",
    "tasks.task_shown",
    "me.me",
    "stream.task_ticket",
    "stream.task_stream",
)
JOIN_ENDPOINTS = ("recruitment.join", "study_join.join_study")
# Every endpoint an owner key opens: the campaigns blueprint, and these.
OWNER_ENDPOINTS = (
    "annotators.create_annotators",
    "annotators.list_annotators",
    "recruitment.recruit_link",
    "exports.export",
    "stream.campaign_ticket",
    "stream.campaign_stream",
    "previews.create_preview",  # a preview spends GPU time: the owner's limit holds it back
    "previews.show_preview",
)
OWNER_BLUEPRINT = "campaigns"
PREVIEW_ENDPOINT = "previews.create_preview"  # also under RATELIMIT_PREVIEW: it costs a render


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
    settings = settings_of(app)
    proxies = settings.proxy_count
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_prefix=proxies
        )
    scope = settings.ratelimit_annotator_scope  # "process" or "shared" (Settings checks)
    shared = SharedLimits(settings.ratelimit_storage_uri, settings.ratelimit_key_prefix)
    app.extensions["rankloop_limits"] = shared
    failure_item = parse(settings.ratelimit_auth_failures)
    failures = TokenBuckets(failure_item.amount, float(failure_item.get_expiry()))
    failures_limit = settings.ratelimit_auth_failures

    def per_credential(limit: str, name: str) -> Callable[[], float]:
        item = parse(limit)
        buckets = TokenBuckets(item.amount, float(item.get_expiry()))

        def check() -> float:
            if scope == "process":
                return buckets.take(credential_key())
            return shared.take(item, name, credential_key())

        return check

    join_item = parse(settings.ratelimit_join)

    def join_check() -> float:
        return shared.take(join_item, "join", f"ip:{request.remote_addr}")

    annotator_check = per_credential(settings.ratelimit_annotator, "annotator")
    owner_check = per_credential(settings.ratelimit_owner, "owner")
    owner_endpoints = [
        *OWNER_ENDPOINTS,
        *(e for e in app.view_functions if e.startswith(f"{OWNER_BLUEPRINT}.")),
    ]
    for endpoints, check, limit in (
        (ANNOTATOR_ENDPOINTS, annotator_check, settings.ratelimit_annotator),
        (owner_endpoints, owner_check, settings.ratelimit_owner),
    ):
        for endpoint in endpoints:
            view = _limited(app.view_functions[endpoint], check, limit)
            app.view_functions[endpoint] = _authenticated(view, failures, failures_limit)
    preview_check = per_credential(settings.ratelimit_preview, "preview")
    app.view_functions[PREVIEW_ENDPOINT] = _limited(
        app.view_functions[PREVIEW_ENDPOINT], preview_check, settings.ratelimit_preview
    )
    for endpoint in JOIN_ENDPOINTS:
        # A participant's browser gets a page that says to try again (join_pages), not JSON.
        app.view_functions[endpoint] = _limited(
            app.view_functions[endpoint],
            join_check,
            settings.ratelimit_join,
            join_pages.too_many_tries,
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
    view: Callable[..., Any],
    check: Callable[[], float],
    limit: str,
    page: Callable[[int], Response | None] | None = None,
) -> Callable[..., Any]:
    """``view`` behind ``check`` (which counts ``limit``, e.g. "60 per minute"); over the limit,
    ``page(retry_after)`` answers when it gives a response, else the API's JSON 429."""

    @wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        if app_settings().ratelimit_enabled:
            wait = check()
            if wait and page is not None and (answer := page(math.ceil(wait))) is not None:
                return answer
            if wait:
                raise TooManyRequests(
                    f"too many requests: at most {limit}; retry later",
                    retry_after=math.ceil(wait),
                )
        return view(*args, **kwargs)

    return limited


def _authenticated(
    view: Callable[..., Any], failures: TokenBuckets, limit: str
) -> Callable[..., Any]:
    """``view`` counting its address's failed authentications, and answering 429 to a failure
    once the address has spent its bucket. The credential is checked first (by the view): a
    request with a valid one never pays for the failures of others behind the same address (a
    lab's NAT), and only further failures are refused."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Unauthorized:
            if not app_settings().ratelimit_enabled:
                raise
            wait = failures.take(f"ip:{request.remote_addr}")
            if wait:
                raise TooManyRequests(
                    "too many requests with an unknown token from this address: at most "
                    f"{limit}; retry later",
                    retry_after=math.ceil(wait),
                ) from None
            raise

    return guarded


def credential_key() -> str:
    """Per token when one is sent (many annotators may share one NAT address), read as
    authentication reads it; else per address."""
    token = parse_bearer(request.headers.get("Authorization", ""))
    if token is not None:
        return "tok:" + hashlib.sha256(token.encode()).hexdigest()[:24]
    return f"ip:{request.remote_addr}"
