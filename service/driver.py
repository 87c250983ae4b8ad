"""The annotator's hot path's plumbing: the tables as Core objects (statements without ORM
objects), and fixed statements run straight on PostgreSQL's driver, in autocommit."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from service.models import Annotator, Assignment, Campaign, Ranking, Round, Study
from service.transitions import is_postgres

ANNOTATORS = cast(Table, Annotator.__table__)
TASKS = cast(Table, Assignment.__table__)  # the annotators' tasks (table ``assignments``)
ROUNDS = cast(Table, Round.__table__)
CAMPAIGNS = cast(Table, Campaign.__table__)
RANKINGS = cast(Table, Ranking.__table__)
STUDIES = cast(Table, Study.__table__)

_COMPILED: dict[int, tuple[str, dict[str, Any]]] = {}


def autocommit_on_postgres(session: Session) -> bool:
    """On PostgreSQL, outside a transaction: switch the session's connection to autocommit
    (each statement its own transaction) and say so; else False (the caller runs its
    statements in one transaction on the session, as SQLite always does)."""
    if not is_postgres(session) or session.in_transaction():
        return False
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


def run_on_driver(session: Session, statement: Any, **params: Any) -> Any:
    """Run a statement straight on the session's psycopg connection (a cursor): compiled once
    per process, then no SQLAlchemy on the way. For the hot path's fixed statements only."""
    compiled = _COMPILED.get(id(statement))
    if compiled is None:
        done = statement.compile(dialect=session.get_bind().dialect)
        compiled = _COMPILED[id(statement)] = (done.string, dict(done.params))
    sql, defaults = compiled
    driver = session.connection().connection.driver_connection
    assert driver is not None
    return driver.execute(sql, {**defaults, **params})


def insert_on_conflict(session: Session, table: Table) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""
    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert as postgres_insert

        return postgres_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


__all__ = [
    "ANNOTATORS",
    "CAMPAIGNS",
    "RANKINGS",
    "ROUNDS",
    "STUDIES",
    "TASKS",
    "autocommit_on_postgres",
    "insert_on_conflict",
    "run_on_driver",
]
