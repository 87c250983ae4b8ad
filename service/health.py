"""Probes for supervisors and load balancers: ``/healthz`` and ``/readyz``.

``/healthz`` (liveness) answers 200 as long as the process serves requests: it touches no
dependency, so a database outage never makes a supervisor kill healthy web processes.
``/readyz`` (readiness) checks what a request needs: the database answers, the broker accepts
a connection, the object store answers, and the database's migrations are at the head of this
release's; any failure answers 503 with a JSON body naming each check and what went wrong, so
a load balancer takes the process out of rotation and an operator reads why.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask, current_app
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from service.db import get_engine

bp = Blueprint("health", __name__)

CHECK_TIMEOUT_S = 3.0  # a broker that does not answer within this is "unreachable"


class Alive(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(json_schema_extra={"enum": ["ok"]})


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ok: bool
    error: str | None = Field(description="what failed (null when ok)")


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(json_schema_extra={"enum": ["ready", "unavailable"]})
    failed: list[str] = Field(description="the names of the checks that failed")
    checks: dict[str, Check] = Field(description="database, broker, store, migrations")


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
            "run `rankloop db upgrade`"
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
    return Readiness(status="unavailable" if failed else "ready", failed=failed, checks=checks)


@bp.get("/healthz")
def healthz():
    return Alive(status="ok").model_dump(mode="json")


@bp.get("/readyz")
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
