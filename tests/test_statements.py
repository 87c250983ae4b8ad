"""The shared statements of :mod:`service.statements`, where one rule has two spellings or a
path's shape is the point: a lease ends at the same instant whichever path leased it, and the
hot path stores a ranking on PostgreSQL in its two statements, without the reference path."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import DateTime, Float, Integer, String, func, literal, select, update

from rankloop.core.contracts import CAMPAIGN_CONCLUDED, CampaignStatus
from service import db, fast_submission
from service.crediting import completion_code
from service.driver import CAMPAIGNS
from service.models import Annotator, Campaign
from service.statements import (
    lease_ends,
    lease_ends_sql,
    lease_lapsed,
    lease_running,
    now_param,
    quorum_met,
    quorum_reached,
)
from service.transitions import is_postgres
from tests.fixtures.coordinator import insert_campaign
from tests.test_service_submission_paths import Play


def test_a_lease_ends_alike_in_python_and_in_postgresql(app):
    now = dt.datetime(2030, 1, 1, 12, 0, 0, 123456)
    with app.app_context(), db.session_scope() as session:
        if not is_postgres(session):
            pytest.skip("the SQL spelling runs on PostgreSQL only")
        for lease_s in (60.0, 90.5, 1800.0, 0.25):
            statement = select(lease_ends_sql(now_param(), literal(lease_s, Float)))
            assert session.scalar(statement, {"now": now}) == lease_ends(now, lease_s)


def test_a_lease_withdrawn_over_the_quorum_runs_for_no_clock(app):
    """A withdrawn lease (its end set to its start) is not running, and is lapsed, even for a
    racing request whose ``now`` is earlier than its start: else that request would count it
    and step back from a place left free."""
    start = dt.datetime(2030, 1, 1, 12, 0, 1)
    earlier = start - dt.timedelta(milliseconds=300)

    def lease(ends: dt.datetime) -> Any:
        return select(
            literal("leased", String).label("status"),
            literal(start, DateTime).label("created_at"),
            literal(ends, DateTime).label("expires_at"),
        )

    withdrawn, running_one = lease(start), lease(start + dt.timedelta(minutes=1))
    leases = withdrawn.union_all(running_one).subquery("leases")
    with app.app_context(), db.session_scope() as session:
        count = select(func.count()).select_from(leases)
        running = session.scalar(count.where(lease_running(earlier, leases)))
        lapsed = session.scalar(count.where(lease_lapsed(earlier, leases)))
    assert (running, lapsed) == (1, 1)


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


def test_the_quorum_is_one_rule_in_python_and_in_sql(app):
    """``quorum_met`` (the sweep's and leasing's SQL) answers as ``quorum_reached`` does."""
    with app.app_context(), db.session_scope() as session:
        campaign_id = insert_campaign(session, annotators_per_round=3)
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        for n in range(6):
            met = session.scalar(
                select(quorum_met(literal(n, Integer))).where(CAMPAIGNS.c.id == campaign_id)
            )
            assert bool(met) == quorum_reached(campaign.config, n) == (n >= 3)


def test_an_ended_campaigns_completion_code_is_issued_once(app):
    """A participant who ranked for a campaign that concluded (finished or stopped, not failed)
    before they met its quota is issued its code, once; one who never ranked is not, and a code
    issued before stays."""
    with app.app_context(), db.session_scope() as session:
        campaign_id = insert_campaign(session)
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        ranked, idle, paid = (
            Annotator(campaign_id=campaign_id, token_hash=name, tasks_done=done)
            for name, done in (("ranked", 2), ("idle", 0), ("paid", 3))
        )
        paid.completion_code = "EARLIER"
        session.add_all([ranked, idle, paid])
        session.commit()

        def stored(annotator: Annotator) -> str | None:
            return session.scalar(
                select(Annotator.completion_code).where(Annotator.id == annotator.id)
            )

        for status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.FAILED):
            campaign.status = status
            session.commit()
            assert completion_code(session, ranked, campaign) is None
            assert stored(ranked) is None
        for status in CAMPAIGN_CONCLUDED:
            campaign.status = status
            session.commit()
            assert completion_code(session, ranked, campaign) == campaign.completion_code
            assert stored(ranked) == campaign.completion_code
            assert ranked.completion_code is None  # as loaded before: the issued code is kept
            assert completion_code(session, ranked, campaign) == campaign.completion_code
            assert completion_code(session, idle, campaign) is None and stored(idle) is None
            assert completion_code(session, paid, campaign) == "EARLIER" == stored(paid)
            session.execute(
                update(Annotator).where(Annotator.id == ranked.id).values(completion_code=None)
            )
            session.commit()
        assert completion_code(session, ranked, None) is None  # a pool annotator
