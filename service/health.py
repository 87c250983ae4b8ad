"""Probes for supervisors and load balancers: ``/healthz`` and ``/readyz``.

``/healthz`` (liveness) answers 200 as long as the process serves requests: it touches no
dependency, so a database outage never makes a supervisor kill healthy web processes.
``/readyz`` (readiness) checks what a request needs: the database answers, the broker accepts
a connection, the object store answers, and the database's migrations are at the head of this
release's; any failure answers 503 with a JSON body naming each check and what went wrong, so
a load balancer takes the process out of rotation and an operator reads why. Its body also
says how the renders fare (``renders``: waiting, the oldest's wait, render workers beating,
stalled), which never changes its status: a stalled GPU tier is no reason to take web processes
out of rotation (:mod:`service.render_backlog` says why).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import Blueprint, Flask, current_app
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from rankloop.core.liveness import (
    WORKER_BEAT_FORGET_S,
    WORKER_BEAT_PREFIX,
    WORKER_BEAT_STALE_S,
    describe_route,
    render_route,
)
from service.config import settings_of
from service.db import get_engine, session_scope, upgrade_hint
from service.models import utcnow
from service.render_backlog import render_backlog
from service.routing import Reply, ok, operation

bp = Blueprint("health", __name__)

CHECK_TIMEOUT_S = 3.0  # a broker that does not answer within this is "unreachable"


class Alive(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(json_schema_extra={"enum": ["ok"]})


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ok: bool
    error: str | None = Field(description="what failed (null when ok)")


class Renders(BaseModel):
    model_config = ConfigDict(extra="forbid")
    waiting: int = Field(description="renders of live campaigns not back yet")
    oldest_s: float | None = Field(description="how long the oldest waiting render has waited")
    render_workers: int = Field(description="render workers beating on this coordinator's queue")
    stalled: int = Field(
        description="renders waiting RANKLOOP_RENDER_LOST_AFTER_S or more while no render worker "
        "beats: nothing renders them (information only: the status stays 200)"
    )


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(json_schema_extra={"enum": ["ready", "unavailable"]})
    failed: list[str] = Field(description="the names of the checks that failed")
    checks: dict[str, Check] = Field(description="database, broker, store, migrations")
    renders: Renders | None = Field(
        description="how the renders fare; never a reason for 503 (null: the database is down)"
    )


def _database() -> None:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))


def _broker() -> None:
    celery = current_app.extensions["celery"]
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_S)


def _store() -> None:
    # Listing an empty prefix costs one request and fails when the bucket is missing.
    current_app.extensions["rankloop_store"].list("healthz/")


def _migrations() -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from service.cli import alembic_config

    engine = get_engine()
    heads = set(ScriptDirectory.from_config(alembic_config(str(engine.url))).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current != heads:
        raise RuntimeError(
            f"database at {sorted(current) or 'no revision'}, release at {sorted(heads)}: "
            f"{upgrade_hint()}"
        )


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "broker": _broker,
    "store": _store,
    "migrations": _migrations,
}


def readiness() -> Readiness:
    """Run every check (each one even when another failed, so the body names them all)."""
    checks: dict[str, Check] = {}
    for name, check in CHECKS.items():
        try:
            check()
            checks[name] = Check(ok=True, error=None)
        except Exception as error:  # any failure of a dependency is "not ready", with its reason
            current_app.logger.warning("readiness check %s failed: %s", name, error)
            checks[name] = Check(ok=False, error=f"{type(error).__name__}: {error}"[:500])
    failed = [name for name, check in checks.items() if not check.ok]
    return Readiness(
        status="unavailable" if failed else "ready",
        failed=failed,
        checks=checks,
        renders=_renders() if checks["database"].ok else None,
    )


def _renders() -> Renders | None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with session_scope(app) as session:
            backlog = render_backlog(session, app, utcnow(), len(render_workers(app).same))
    except Exception as error:  # information only: readiness never fails for it
        current_app.logger.warning("render backlog unreadable: %s", error)
        return None
    return Renders(**asdict(backlog))


@dataclass
class RenderWorkers:
    """The render workers whose heartbeat is fresh, on this coordinator's route or another."""

    route: dict[str, Any]
    same: list[dict[str, Any]] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mismatch(self) -> str | None:
        """Why renders wait forever, when workers listen elsewhere and none here; else None."""
        if self.same or not self.other:
            return None
        seen = "; ".join(
            f"{beat.get('worker')} ({describe_route(beat.get('route') or {})})"
            for beat in self.other[:5]
        )
        return (
            f"no render worker reads this coordinator's renders ({describe_route(self.route)}); "
            f"{len(self.other)} read another queue: {seen}. Give the workers the coordinator's "
            "RANKLOOP_BROKER_URL and RANKLOOP_BROKER_TRANSPORT_OPTIONS"
        )[:1000]


_census: dict[int, tuple[float, RenderWorkers]] = {}
CENSUS_TTL_S = 5.0  # one store listing per process every few seconds at most


def render_workers(app: Flask | None = None) -> RenderWorkers:
    """The render workers' heartbeats (``rankloop.core.liveness``) read from the store. A
    store that cannot be read counts no worker (then no mismatch is claimed)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    cached = _census.get(id(app))
    if cached and time.monotonic() - cached[0] < CENSUS_TTL_S:
        return cached[1]
    census = RenderWorkers(route=render_route(settings_of(app)))
    store = app.extensions["rankloop_store"]
    try:
        keys = store.list(WORKER_BEAT_PREFIX)
        now = time.time()
        for key in keys:
            try:
                beat = json.loads(store.get(key))
                age = now - float(beat["at"])
            except Exception:  # gone meanwhile, or not a heartbeat: no worker
                continue
            if age > WORKER_BEAT_FORGET_S:  # a worker long gone: its file is read no more
                store.delete(key)
                continue
            fresh = age < WORKER_BEAT_STALE_S
            if fresh:
                (census.same if beat.get("route") == census.route else census.other).append(beat)
    except Exception as error:
        app.logger.info("render worker heartbeats unreadable: %s", error)
    _census[id(app)] = (time.monotonic(), census)
    return census


@operation(
    bp,
    "GET",
    "/healthz",
    summary="Liveness: the process serves requests",
    responses=ok(Alive),
)
def healthz():
    return Alive(status="ok").model_dump(mode="json")


@operation(
    bp,
    "GET",
    "/readyz",
    summary="Readiness: database, broker, object store reachable and migrations at head",
    responses={200: Reply("Ready", Readiness), 503: Reply("Not ready", Readiness)},
)
def readyz():
    result = readiness()
    response = current_app.json.response(result.model_dump(mode="json"))
    if result.failed:
        response.status_code = 503
        response.headers["Retry-After"] = "5"
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
