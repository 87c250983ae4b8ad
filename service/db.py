"""Database wiring: one engine per app, one session per request (closed at teardown), and
which errors mean the database is unavailable (:func:`database_unavailable_errors`: the API's
503, the bookkeeping jobs' retry).

SQLite (the embedded default) gets WAL and a busy timeout so that the web threads and the
bookkeeping worker can share the file; PostgreSQL gets a connection pool.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy import exc as sa
from sqlalchemy.orm import Session, sessionmaker

from rankloop.core.settings import settings_of
from service import notify


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite ``url`` (None for another database or an in-memory one)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" and "///" in url else None


def make_engine(url: str, **options) -> Engine:
    """An engine for ``url`` with the settings rankloop relies on."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # Let the "begin" listener below issue BEGIN itself (SQLAlchemy's pysqlite recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        # pysqlite's own transaction handling defers BEGIN; take the write lock at BEGIN
        # instead, so read-modify-write transactions cannot interleave.
        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Pool size and pre-ping: rankloop.core.settings (DATABASE_POOL_SIZE, ...). The web tier
    # pings not (a connection that died in the pool fails its first statement, is dropped, and
    # that request answers 503 with Retry-After, service.errors); the bookkeeping workers do
    # (service.worker): a job that fails on a dead connection would be lost, not retried.
    return create_engine(url, **options)


def init_app(app: Flask) -> None:
    settings = settings_of(app)
    options = {}
    if not settings.database_url.startswith("sqlite"):
        options = {
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_max_overflow,
            "pool_pre_ping": settings.database_pre_ping,
        }
    engine = make_engine(settings.database_url, **options)
    app.extensions["rankloop_engine"] = engine
    sessions = sessionmaker(engine, expire_on_commit=False)
    notify.install(sessions)  # live streams hear of rounds and statuses changed (service.push)
    app.extensions["rankloop_sessionmaker"] = sessions
    app.teardown_appcontext(_close_session)


def get_engine(app: Flask | None = None) -> Engine:
    return (app or current_app).extensions["rankloop_engine"]


def get_session() -> Session:
    """The request's session (created on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["rankloop_sessionmaker"]()
    return g.db_session


@contextmanager
def session_scope(app: Flask | None = None) -> Iterator[Session]:
    """A session outside a request (Celery tasks, threads): committed by the caller."""
    session = (app or current_app).extensions["rankloop_sessionmaker"]()
    try:
        yield session
    finally:
        session.close()


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is None:
        return
    try:
        session.close()
    except Exception:
        # The connection died under the request (its answer, a 503, is already made): an error
        # here would escape Flask and become the server's HTML 500. Throw the connection away.
        current_app.logger.warning("closing a session on a dead connection", exc_info=True)
        with contextlib.suppress(Exception):  # nothing left to release
            session.invalidate()


# What a database without rankloop's tables answers: SQLite's, and PostgreSQL's UndefinedTable.
_MISSING_TABLE = re.compile(r"no such table|UndefinedTable|relation \S+ does not exist")
NO_TABLES = "the database has no rankloop tables"


def upgrade_hint(url: str | None = None) -> str:
    """What creates the tables: ``rankloop db upgrade``, with the database's URL (password
    hidden) where the caller named one."""
    if url is None:
        return "create the tables with `rankloop db upgrade` (add --url for another database)"
    shown = make_url(url).render_as_string(hide_password=True)
    return f"create the tables with `rankloop db upgrade --url {shown}`"


def missing_tables(error: BaseException) -> bool:
    """Whether ``error`` says the rankloop tables are not there (a database never upgraded)."""
    return bool(_MISSING_TABLE.search(str(error)))


def database_unavailable_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "the database is down, busy or the connection died": a retry
    later may succeed. Constraint and data errors are not among them (they are bugs or bad
    input, answered elsewhere)."""
    errors: list[type[Exception]] = [
        sa.OperationalError,
        sa.InterfaceError,
        sa.DisconnectionError,
        sa.TimeoutError,  # the pool had no connection to give within its timeout
    ]
    try:
        import psycopg
    except ImportError:  # SQLite only
        return tuple(errors)
    return (*errors, psycopg.OperationalError, psycopg.InterfaceError)


def create_all(app: Flask) -> None:
    """Create the tables directly from the models (tests; production uses ``rankloop db upgrade``)."""
    from service.models import Base

    Base.metadata.create_all(get_engine(app))
