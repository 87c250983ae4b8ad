"""The crowd's verdict: the Wilson interval, the verdict round (opened as a campaign's last
round and on demand, offered to non-steering annotators first) and the share read back from the
stored answers."""

from __future__ import annotations

import datetime as dt
import functools
import json

import pytest
from sqlalchemy import select

from rankloop.core.campaign_settings import CampaignSettings, verdict_wanted
from rankloop.core.errors import Conflict, InvalidInput
from rankloop.core.verdict import count_answers, preference, wilson_interval
from service import closing, db, leasing, lifecycle, submission, verdicts
from service.auth import hash_token
from service.models import Annotator, Campaign, Round, utcnow
from tests.fixtures.coordinator import insert_campaign, render_round

new_campaign = functools.partial(insert_campaign, m=4)


# -- the interval, against published figures -----------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # R. G. Newcombe, Statistics in Medicine 17 (1998) 857-872, Table I, method 3 (score).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # Brown, Cai and DasGupta's worked case and the symmetric one.
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, low, high):
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_refuses_impossible_counts_and_is_uninformative_without_data():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(InvalidInput):
        wilson_interval(3, 2)
    with pytest.raises(InvalidInput):
        wilson_interval(-1, 2)


def test_an_answer_reads_as_a_preference():
    assert preference([1, 0], start=0, delivered=1) == "delivered"
    assert preference([0, 1], start=0, delivered=1) == "starting"
    assert preference([0], start=0, delivered=1) == "starting"  # the unranked one is below
    assert preference([[0, 1]], start=0, delivered=1) == "tie"
    assert preference([], start=0, delivered=1) is None
    counted = count_answers(
        [([1, 0], 0, 1, False), ([1, 0], 0, 1, True), ([0, 1], 0, 1, False), ([[0, 1]], 0, 1, True)]
    )
    assert (counted.delivered, counted.start, counted.ties, counted.fresh) == (2, 1, 1, 2)
    assert counted.share == pytest.approx(2 / 3)
    assert counted.interval == wilson_interval(2, 3)


def test_the_verdict_is_on_by_default_from_five_rounds():
    assert not verdict_wanted(CampaignSettings.from_stored({"prompt": "p", "rounds": 4}))
    assert verdict_wanted(CampaignSettings.from_stored({"prompt": "p", "rounds": 5}))
    assert not verdict_wanted(CampaignSettings.from_stored({"rounds": 9, "verdict": False}))
    assert verdict_wanted(CampaignSettings.from_stored({"rounds": 1, "verdict": True}))


# -- the verdict round ----------------------------------------------------------------------------


@pytest.fixture
def session(app):
    with app.app_context(), db.session_scope() as s:
        yield s


def _annotator(session, campaign_id, name, seen=True) -> Annotator:
    annotator = Annotator(
        campaign_id=campaign_id, token_hash=hash_token(name), last_seen=utcnow() if seen else None
    )
    session.add(annotator)
    session.commit()
    return annotator


def _round(session, cid, number) -> Round:
    found = session.scalar(select(Round).where(Round.campaign_id == cid, Round.number == number))
    assert found is not None
    return found


def _answer(session, annotator, prefer: str):
    """Lease the annotator's next task (a verdict round) and rank ``prefer`` first."""
    leased = leasing.lease(session, annotator)
    assert leased is not None
    task, round_, _ = leased
    assert round_.kind == "verdict"
    by_role = {image.role: image.id for image in round_.images}
    other = "starting" if prefer == "delivered" else "delivered"
    submission.submit(session, annotator, task.id, [by_role[prefer], by_role[other]])
    return round_.id


def _steer(app, session, cid, annotators, rounds):
    lifecycle.start(session, cid)
    for number in range(rounds):
        render_round(app, cid, number, session=session)
        for annotator in annotators:
            leased = leasing.lease(session, annotator)
            assert leased is not None
            task, round_, _ = leased
            submission.submit(session, annotator, task.id, [i.id for i in round_.images])
        closing.close_if_ready(session, _round(session, cid, number).id)


def test_a_campaign_ends_with_a_verdict_round_asked_of_non_steering_annotators_first(app, session):
    # A quota of 3 steering rankings: the steering annotators are at it when the verdict opens.
    cid = new_campaign(session, rounds=3, verdict=True, tasks_per_annotator=3)
    alice, bob = _annotator(session, cid, "alice"), _annotator(session, cid, "bob")
    _steer(app, session, cid, [alice, bob], 3)

    campaign = session.get(Campaign, cid)
    session.refresh(campaign)
    assert campaign.status == "running"  # not finished: the verdict round is open
    verdict_round = _round(session, cid, 3)
    assert (verdict_round.kind, verdict_round.status) == ("verdict", "open")
    keys = {image.role: image.key for image in verdict_round.images}
    assert keys == {"starting": _round(session, cid, 0).best_key,
                    "delivered": _round(session, cid, 2).best_key}  # fmt: skip

    # A newcomer who has not steered is around: the steering annotators wait for them.
    carol = _annotator(session, cid, "carol")
    assert leasing.lease(session, alice) is None
    _answer(session, carol, "delivered")
    # Nobody who did not steer is left to ask: a steering annotator answers (quota or not).
    _answer(session, alice, "starting")
    closing.close_if_ready(session, verdict_round.id)
    session.refresh(campaign)
    assert campaign.status == "finished"

    verdict = verdicts.campaign_verdict(session, cid)
    assert (verdict.delivered, verdict.start, verdict.fresh) == (1, 1, 1)
    assert verdict.interval == wilson_interval(1, 2)


def test_steering_annotators_are_offered_the_verdict_once_it_is_extended(app, session):
    cid = new_campaign(session, rounds=2, verdict=True)
    alice, bob = _annotator(session, cid, "alice"), _annotator(session, cid, "bob")
    _steer(app, session, cid, [alice, bob], 2)
    _annotator(session, cid, "carol")  # around, and never comes
    assert leasing.lease(session, alice) is None
    verdict_round = _round(session, cid, 2)
    verdict_round.extensions = 1  # its first deadline passed (service.sweep extends it)
    session.commit()
    _answer(session, alice, "delivered")


def test_an_annotator_seen_long_ago_does_not_hold_the_verdict_back(app, session):
    cid = new_campaign(session, rounds=2, verdict=True)
    alice, bob = _annotator(session, cid, "alice"), _annotator(session, cid, "bob")
    _steer(app, session, cid, [alice, bob], 2)
    dave = _annotator(session, cid, "dave")
    dave.last_seen = utcnow() - verdicts.FRESH_SEEN - dt.timedelta(minutes=1)
    session.commit()
    _answer(session, alice, "delivered")


def test_an_excluded_annotators_answer_does_not_count(app, session):
    cid = new_campaign(session, rounds=2, verdict=True)
    alice, bob = _annotator(session, cid, "alice"), _annotator(session, cid, "bob")
    _steer(app, session, cid, [alice, bob], 2)
    _answer(session, alice, "delivered")
    _answer(session, bob, "starting")
    bob.excluded = True
    session.commit()
    verdict = verdicts.campaign_verdict(session, cid)
    assert (verdict.delivered, verdict.start) == (1, 0)


def test_no_verdict_round_when_the_setting_is_off_or_for_a_short_campaign(app, session):
    for settings in ({"rounds": 2}, {"rounds": 5, "verdict": False}):
        cid = new_campaign(session, **settings)
        annotators = [_annotator(session, cid, f"{cid}-{n}") for n in "ab"]
        _steer(app, session, cid, annotators, settings["rounds"])
        campaign = session.get(Campaign, cid)
        session.refresh(campaign)
        assert campaign.status == "finished"
        assert all(r.kind != "verdict" for r in campaign.rounds)


def test_a_verdict_is_asked_on_demand_of_an_ended_campaign(app, owner):
    with app.app_context(), db.session_scope() as session:
        cid = new_campaign(session, rounds=2, tasks_per_annotator=5)
        alice, bob = _annotator(session, cid, "alice"), _annotator(session, cid, "bob")
        _steer(app, session, cid, [alice, bob], 1)
        with pytest.raises(Conflict, match="running"):
            verdicts.request(session, cid)
        session.rollback()
        render_round(app, cid, 1, session=session)
        for annotator in (alice, bob):
            task, round_, _ = leasing.lease(session, annotator)
            submission.submit(session, annotator, task.id, [i.id for i in round_.images])
        closing.close_if_ready(session, _round(session, cid, 1).id)
    shown = owner.get(f"/api/campaigns/{cid}").json
    assert shown["status"] == "finished" and shown["verdict"]["share"] is None

    asked = owner.post(f"/api/campaigns/{cid}/verdict")
    assert asked.status_code == 202, asked.json
    assert asked.json["open"] and asked.json["rounds"] == [2]
    with app.app_context(), db.session_scope() as session:
        assert session.get(Campaign, cid).status == "running"
        with pytest.raises(Conflict, match="is running"):
            verdicts.request(session, cid)
        session.rollback()
        alice, bob = (session.get(Annotator, a.id) for a in (alice, bob))
        round_id = _answer(session, alice, "delivered")
        _answer(session, bob, "delivered")
        closing.close_if_ready(session, round_id)

    shown = owner.get(f"/api/campaigns/{cid}").json
    assert shown["status"] == "finished"
    low, high = wilson_interval(2, 2)
    assert shown["verdict"] == {
        "share": 1.0, "low": pytest.approx(low), "high": pytest.approx(high), "n": 2,
        "prefer_delivered": 2, "prefer_start": 0, "ties": 0, "from_non_steering": 0,
        "summary": shown["verdict"]["summary"], "rounds": [2], "open": False,
    }  # fmt: skip
    assert shown["verdict"]["summary"].startswith("100% of 2 answers prefer the delivered")
    assert owner.get(f"/api/campaigns/{cid}/verdict").json == shown["verdict"]
    exported = owner.get(f"/api/campaigns/{cid}/export?format=verdict.jsonl")
    assert exported.status_code == 200, exported.data
    (row,) = [json.loads(line) for line in exported.data.decode().splitlines()]
    assert (row["share"], row["n"], row["verdict_rounds"]) == (1.0, 2, [2])
    assert row["start_image_ref"].endswith("rounds/0000/best.png")
    assert row["delivered_image_ref"].endswith("rounds/0001/best.png")


def test_nothing_to_compare_is_a_conflict(app, session):
    cid = new_campaign(session, rounds=1)  # its start is what it delivers
    _steer(app, session, cid, [_annotator(session, cid, n) for n in "ab"], 1)
    with pytest.raises(Conflict, match="nothing to compare"):
        verdicts.request(session, cid)


def test_recent_is_the_fresh_window():
    now = dt.datetime(2026, 1, 1, 12)
    assert verdicts.recent(now) == now - verdicts.FRESH_SEEN


def test_a_stopped_campaign_asked_for_a_verdict_ends_stopped_again(app, session):
    cid = new_campaign(session, rounds=4, tasks_per_annotator=9)
    alice, bob = _annotator(session, cid, "alice"), _annotator(session, cid, "bob")
    _steer(app, session, cid, [alice, bob], 2)
    render_round(app, cid, 2, session=session)
    # A round left rendering or open holds the verdict back.
    session.execute(
        Round.__table__.update().where(Round.campaign_id == cid, Round.number == 2)
        .values(status="failed")
    )  # fmt: skip
    session.commit()
    lifecycle.stop(session, cid)
    verdicts.request(session, cid)
    verdict_round = _round(session, cid, 3)
    keys = {image.role: image.key for image in verdict_round.images}
    assert keys["delivered"] == _round(session, cid, 2).best_key
    _answer(session, alice, "delivered")
    _answer(session, bob, "delivered")
    closing.close_if_ready(session, verdict_round.id)
    campaign = session.get(Campaign, cid)
    session.refresh(campaign)
    assert campaign.status == "stopped"


@pytest.mark.parametrize(("p_true", "n"), [(0.5, 12), (0.7, 40), (0.9, 25)])
def test_the_interval_covers_the_truth_at_its_nominal_rate(p_true, n):
    """A simulated crowd of ``n`` annotators, each preferring the delivered image with
    probability ``p_true`` (a Plackett-Luce choice between two images), over 2000 seeds: the
    95 % Wilson interval holds the truth about 95 % of the time (it oscillates with n, within
    a few points, and never collapses as the Wald interval does near 0 or 1)."""
    import numpy as np

    covered = 0
    seeds = 2000
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        prefer = int((rng.random(n) < p_true).sum())
        answers = [([1, 0] if i < prefer else [0, 1], 0, 1, False) for i in range(n)]
        low, high = count_answers(answers).interval or (0.0, 1.0)
        covered += low <= p_true <= high
    assert 0.92 <= covered / seeds <= 0.985, covered / seeds
