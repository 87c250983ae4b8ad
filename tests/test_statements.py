"""The shared statements of :mod:`service.statements`, where one rule has two spellings or a
path's shape is the point: a lease ends at the same instant whichever path leased it, and the
hot path stores a ranking on PostgreSQL in its two statements, without the reference path."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Float, literal, select

from service import db, fast_submission
from service.statements import lease_ends, lease_ends_sql, now_param
from service.transitions import is_postgres
from tests.test_service_submission_paths import Play


def test_a_lease_ends_alike_in_python_and_in_postgresql(app):
    now = dt.datetime(2030, 1, 1, 12, 0, 0, 123456)
    with app.app_context(), db.session_scope() as session:
        if not is_postgres(session):
            pytest.skip("the SQL spelling runs on PostgreSQL only")
        for lease_s in (60.0, 90.5, 1800.0, 0.25):
            statement = select(lease_ends_sql(now_param(), literal(lease_s, Float)))
            assert session.scalar(statement, {"now": now}) == lease_ends(now, lease_s)


def test_the_hot_path_stores_a_ranking_in_two_statements_on_postgresql(app, monkeypatch):
    sent, fell_back = [], []
    run_on_driver, reference_path = fast_submission.run_on_driver, fast_submission._reference_path

    def counted(session, statement, **params):
        sent.append(statement)
        return run_on_driver(session, statement, **params)

    def noted(*args, **kwargs):
        fell_back.append(args)
        return reference_path(*args, **kwargs)

    monkeypatch.setattr(fast_submission, "run_on_driver", counted)
    monkeypatch.setattr(fast_submission, "_reference_path", noted)
    with app.app_context(), db.session_scope() as session:
        if not is_postgres(session):
            pytest.skip("one statement on PostgreSQL only")
        play = Play(app, session, "fast, one statement")
        play.lease("a")
        play.submit("a")
    assert play.answers[-1][2][0] == "stored"
    assert len(sent) == 2 and not fell_back
