"""The adaptive quorum in the coordinator (service.quorum, leasing, closing, sweep) on SQLite and
PostgreSQL, without HTTP: a round closes at the minimum once its decision is settled, asks one
more annotator at a time up to the cap while it is not, and records why it closed."""

from __future__ import annotations

import datetime as dt
import functools

import pytest
from sqlalchemy import select

from service import closing, db, fast_submission, leasing, lifecycle, submission, sweep
from service.auth import hash_token
from service.models import Annotator, Consensus, Ranking, Round, utcnow
from tests.fixtures.coordinator import insert_campaign, render_round

M = 4
ATTENTION = M  # the attention image's position
FORWARD = [0, 1, 2, 3]
BACKWARD = [3, 2, 1, 0]
SWAPPED = [1, 0, 2, 3]  # agrees with FORWARD but on the winner
adaptive_campaign = functools.partial(
    insert_campaign, m=M, quorum="adaptive", min_annotators_per_round=2, annotators_per_round=4
)


@pytest.fixture
def session(app):
    with app.app_context(), db.session_scope() as s:
        yield s


def annotators(session, campaign_id, names):
    made = [Annotator(campaign_id=campaign_id, token_hash=hash_token(n)) for n in names]
    session.add_all(made)
    session.commit()
    return made


def rank(session, annotator, candidates, now=None):
    """Lease a task and rank the candidates in this position order, the attention image last."""
    leased = leasing.lease(session, annotator, now)
    assert leased is not None
    task, round_, _ = leased
    by_position = {image.position: image.id for image in round_.images}
    order = [by_position[p] for p in [*candidates, ATTENTION]]
    return submission.submit(session, annotator, task.id, order, now)


def the_round(session, campaign_id, number=0) -> Round:
    session.rollback()
    round_ = session.scalar(
        select(Round).where(Round.campaign_id == campaign_id, Round.number == number)
    )
    session.refresh(round_)
    return round_


def started(app, session, **settings):
    cid = adaptive_campaign(session, **settings)
    lifecycle.start(session, cid)
    render_round(app, cid, 0, m=M, session=session)
    return cid


def test_a_unanimous_round_closes_at_the_minimum(app, session):
    cid = started(app, session)
    a, b = annotators(session, cid, "ab")
    assert the_round(session, cid).quorum == 2
    first = rank(session, a, FORWARD)
    assert not first.quorum_reached
    second = rank(session, b, FORWARD)
    assert second.quorum_reached
    assert closing.close_if_ready(session, second.round_id).events == ["closed"]
    round_ = the_round(session, cid)
    assert (round_.status, round_.close_reason, round_.n_rankings) == ("closed", "settled", 2)
    assert session.get(Consensus, round_.id).n_rankings == 2


def test_a_split_round_asks_up_to_the_cap(app, session):
    cid = started(app, session)
    people = annotators(session, cid, "abcde")
    orders = [FORWARD, SWAPPED, FORWARD, SWAPPED]
    for n, (person, order) in enumerate(zip(people, orders, strict=False), start=1):
        stored = rank(session, person, order)
        if n < 2:
            continue
        assert stored.quorum_reached
        outcome = closing.close_if_ready(session, stored.round_id)
        round_ = the_round(session, cid)
        if n < 4:  # unsettled: one more annotator asked, no more
            assert outcome.events == [] and round_.status == "open"
            assert round_.quorum == n + 1
    round_ = the_round(session, cid)
    assert (round_.status, round_.close_reason, round_.n_rankings) == ("closed", "cap", 4)
    # The fifth annotator never got a task on it.
    assert leasing.lease(session, people[4]) is None or the_round(session, cid, 1) is not None


def test_an_adaptive_round_leases_only_up_to_its_current_quorum(app, session):
    cid = started(app, session)
    a, b, c = annotators(session, cid, "abc")
    assert leasing.lease(session, a) is not None
    assert leasing.lease(session, b) is not None
    assert leasing.lease(session, c) is None  # the minimum is leased: nobody else yet


def test_an_unsettled_round_past_its_deadline_closes_for_the_deadline(app, session):
    cid = started(app, session)
    a, b = annotators(session, cid, "ab")
    rank(session, a, FORWARD)
    closing.close_if_ready(session, rank(session, b, SWAPPED).round_id)
    assert the_round(session, cid).status == "open"
    sweep.sweep(session, utcnow() + dt.timedelta(days=1))
    round_ = the_round(session, cid)
    assert (round_.status, round_.close_reason, round_.n_rankings) == ("closed", "deadline", 2)


def test_an_adaptive_round_short_of_its_minimum_is_extended(app, session):
    cid = started(app, session)
    (a,) = annotators(session, cid, "a")
    rank(session, a, FORWARD)
    outcome = sweep.sweep(session, utcnow() + dt.timedelta(days=1))
    assert outcome.events == ["extended"]
    assert the_round(session, cid).status == "open"


def test_a_fixed_quorum_is_unchanged(app, session):
    cid = insert_campaign(session, m=M, annotators_per_round=3)
    lifecycle.start(session, cid)
    render_round(app, cid, 0, m=M, session=session)
    a, b, c, d = annotators(session, cid, "abcd")
    assert the_round(session, cid).quorum is None
    for person in (a, b):
        stored = rank(session, person, FORWARD)
        assert not stored.quorum_reached
        assert closing.close_if_ready(session, stored.round_id).events == []
    assert the_round(session, cid).quorum is None  # never raised
    assert leasing.lease(session, c) is not None
    assert leasing.lease(session, d) is None
    stored = rank(session, c, FORWARD)
    assert stored.quorum_reached
    assert closing.close_if_ready(session, stored.round_id).events == ["closed"]
    round_ = the_round(session, cid)
    assert (round_.close_reason, round_.n_rankings) == ("cap", 3)


# -- no waiting for stragglers ----------------------------------------------------------------


def straggler_campaign(app, session, now):
    """A fixed quorum of 3 offering stragglers at twice the median; round 0 ranked by a, b, c
    in 20 s each (the measured median), round 1 open."""
    cid = insert_campaign(
        session, m=M, annotators_per_round=3, straggler_after=2.0, lease_s=900.0, rounds=3
    )
    lifecycle.start(session, cid)
    render_round(app, cid, 0, m=M, session=session)
    people = annotators(session, cid, "abcde")
    for person in people[:3]:
        leasing.lease(session, person, now)
    for person in people[:3]:
        stored = rank(session, person, FORWARD, now + dt.timedelta(seconds=20))
    closing.close_if_ready(session, stored.round_id)
    render_round(app, cid, 1, m=M, session=session)
    return cid, people


def test_a_straggler_s_slot_is_offered_once_and_never_over_the_quorum(app, session):
    t0 = utcnow()
    cid, (a, b, c, d, e) = straggler_campaign(app, session, t0)
    t1 = t0 + dt.timedelta(minutes=1)
    rank(session, a, FORWARD, t1 + dt.timedelta(seconds=10))
    rank(session, b, FORWARD, t1 + dt.timedelta(seconds=10))
    assert leasing.lease(session, c, t1) is not None  # the last slot: c takes its time
    assert leasing.lease(session, d, t1 + dt.timedelta(seconds=30)) is None  # never over-leased
    # Not yet well past the median (20 s): no offer.
    assert "straggler_offered" not in sweep.sweep(session, t1 + dt.timedelta(seconds=35)).events
    assert the_round(session, cid, 1).straggler_at is None
    assert "straggler_offered" in sweep.sweep(session, t1 + dt.timedelta(seconds=45)).events
    assert the_round(session, cid, 1).straggler_at is not None
    assert "straggler_offered" not in sweep.sweep(session, t1 + dt.timedelta(seconds=90)).events
    # One more annotator, one only.
    assert leasing.lease(session, d, t1 + dt.timedelta(seconds=46)) is not None
    assert leasing.lease(session, e, t1 + dt.timedelta(seconds=46)) is None
    # The first ranking to arrive closes the round.
    stored = rank(session, d, FORWARD, t1 + dt.timedelta(seconds=60))
    assert stored.quorum_reached
    assert closing.close_if_ready(session, stored.round_id).events == ["closed"]
    round_ = the_round(session, cid, 1)
    assert (round_.status, round_.close_reason, round_.n_rankings) == ("closed", "straggler", 3)
    assert session.get(Consensus, round_.id).n_rankings == 3


def test_a_straggler_s_late_ranking_is_kept_credited_and_exported(app, session):
    t0 = utcnow()
    cid, (a, b, c, d, _e) = straggler_campaign(app, session, t0)
    t1 = t0 + dt.timedelta(minutes=1)
    rank(session, a, FORWARD, t1)
    rank(session, b, FORWARD, t1)
    task, _, _ = leasing.lease(session, c, t1)
    sweep.sweep(session, t1 + dt.timedelta(seconds=60))
    stored = rank(session, d, FORWARD, t1 + dt.timedelta(seconds=70))
    closing.close_if_ready(session, stored.round_id)
    before = session.get(Annotator, c.id).tasks_done
    round_ = the_round(session, cid, 1)
    by_position = {image.position: image.id for image in round_.images}
    late = submission.submit(
        session,
        c,
        task.id,
        [by_position[p] for p in [*BACKWARD, ATTENTION]],
        t1 + dt.timedelta(seconds=90),
    )
    assert late.late and not late.quorum_reached
    session.rollback()
    ranking = session.get(Ranking, late.ranking_id)
    assert ranking.late and ranking.round_id == round_.id
    assert session.get(Annotator, c.id, populate_existing=True).tasks_done == before + 1
    round_ = the_round(session, cid, 1)
    assert round_.n_rankings == 3 and session.get(Consensus, round_.id).n_rankings == 3
    # The same order again answers the same, changes nothing.
    again = submission.submit(
        session, c, task.id, [by_position[p] for p in [*BACKWARD, ATTENTION]], utcnow()
    )
    assert again.ranking_id == late.ranking_id
    # In the export, marked late.
    from service.datasets.source import CampaignSource

    source = CampaignSource(app.extensions["rankloop_sessionmaker"], cid)
    exported = [(info.number, r.id, r.late) for info, r in source.rankings()]
    assert (1, late.ranking_id, True) in exported


def test_no_offer_without_the_setting(app, session):
    t0 = utcnow()
    cid = insert_campaign(session, m=M, annotators_per_round=2, lease_s=900.0)
    lifecycle.start(session, cid)
    render_round(app, cid, 0, m=M, session=session)
    a, b, c = annotators(session, cid, "abc")
    for person in (a, b):
        leasing.lease(session, person, t0)
    rank(session, a, FORWARD, t0 + dt.timedelta(seconds=20))
    assert "straggler_offered" not in sweep.sweep(session, t0 + dt.timedelta(seconds=500)).events
    assert leasing.lease(session, c, t0 + dt.timedelta(seconds=500)) is None


def test_the_hot_path_reads_the_round_s_own_quorum(app, session):
    cid = started(app, session)
    people = annotators(session, cid, "ab")
    reached = []
    for person in people:
        task, round_, _ = leasing.lease(session, person)
        by_position = {image.position: image.id for image in round_.images}
        order = [by_position[p] for p in [*FORWARD, ATTENTION]]
        session.commit()  # outside a transaction, as a request: PostgreSQL's one statement
        stored = fast_submission.submit_by_token(session, person.token_hash, task.id, order)
        reached.append(stored.quorum_reached)
    assert reached == [False, True]  # the minimum (2), not the cap (4)
