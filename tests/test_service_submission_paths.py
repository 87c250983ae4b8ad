"""One specification of a submission: the reference path (:func:`service.submission.submit`)
and the annotator's hot path (:func:`service.fast_submission.submit_by_token`, in steps, and in
one statement on PostgreSQL) give the same answers and leave the same rows.

Each scenario runs once per path, on a fresh campaign of its own built the same way, and the
records are compared: every answer (or the error's class), the stored rankings, the annotators'
credit (tasks done, attention checks failed, completion code), the rounds' counts and the
tasks' statuses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from rankloop.core.contracts import ImageRole
from rankloop.core.errors import RankloopError
from service import closing, db, fast_submission, leasing, lifecycle, submission
from service.auth import hash_token
from service.models import Annotator, Assignment, Campaign, Image, Ranking, Round
from service.schemas import CampaignCreate
from service.transitions import is_postgres
from tests.fixtures.coordinator import render_round

T0 = dt.datetime(2030, 1, 1, 12, 0, 0)
WHO = ("a", "b")


class Play:
    """One campaign, its annotators ``a`` and ``b``, and one way to submit."""

    def __init__(self, app, session, path: str, **settings: Any):
        self.app, self.session, self.path = app, session, path
        body = CampaignCreate(
            **{"prompt": "p", "m": 4, "annotators_per_round": 2, "lease_s": 60, **settings}
        )
        campaign = Campaign(name="t", prompt=body.prompt, settings=body.settings())
        session.add(campaign)
        session.commit()
        self.cid = campaign.id
        lifecycle.start(session, self.cid)
        self.tokens = {who: hash_token(f"{self.cid}-{who}") for who in WHO}
        session.add_all(Annotator(campaign_id=self.cid, token_hash=self.tokens[who]) for who in WHO)
        session.commit()
        self.render(0)
        self.tasks: dict[str, str] = {}
        self.answers: list[Any] = []

    def _annotator(self, who: str) -> Annotator:
        annotator = self.session.scalar(
            select(Annotator).where(Annotator.token_hash == self.tokens[who])
        )
        assert annotator is not None
        return annotator

    def render(self, number: int) -> None:
        render_round(self.app, self.cid, number, session=self.session)

    def lease(self, who: str, now: dt.datetime = T0) -> None:
        self.session.commit()
        leased = leasing.lease(self.session, self._annotator(who), now)
        assert leased is not None, f"{who} got no task"
        self.tasks[who] = leased[0].id
        self.session.commit()

    def submit(
        self, who: str, now: dt.datetime = T0, task_of: str | None = None, order: str = "honest"
    ) -> None:
        task_id = self.tasks.get(task_of or who, "no-such-task")
        ids = self._order(task_id, order)
        token_hash = self.tokens[who]
        session = self.session
        session.commit()  # each path starts outside a transaction (as a request does)
        try:
            if self.path == "reference":
                stored = submission.submit(session, self._annotator(who), task_id, ids, now)
            else:
                if self.path == "fast, in steps":
                    session.connection()  # in a transaction: PostgreSQL runs it in steps too
                stored = fast_submission.submit_by_token(session, token_hash, task_id, ids, now)
            answer: Any = ("stored", stored.late, stored.attention_passed, stored.quorum_reached)
        except RankloopError as error:
            answer = type(error).__name__
        session.rollback()
        self.answers.append((who, order, answer))

    def stop(self) -> None:
        self.session.commit()
        lifecycle.stop(self.session, self.cid)

    def close(self, number: int = 0) -> None:
        round_id = self.session.scalar(
            select(Round.id).where(Round.campaign_id == self.cid, Round.number == number)
        )
        assert round_id is not None
        assert closing.close_if_ready(self.session, round_id).events == ["closed"]

    def _order(self, task_id: str, kind: str) -> list[str]:
        task = self.session.get(Assignment, task_id)
        if task is None:  # an unknown task: any image ids will do
            round_id = self.session.scalar(select(Round.id).where(Round.campaign_id == self.cid))
        else:
            round_id = task.round_id
        images = self.session.scalars(
            select(Image).where(Image.round_id == round_id).order_by(Image.position)
        ).all()
        honest = sorted(images, key=lambda i: (i.role == ImageRole.ATTENTION, i.index))
        ids = [i.id for i in honest]
        if kind == "attention first":
            return ids[-1:] + ids[:-1]
        if kind == "too short":
            return ids[:1]
        return ids

    def record(self) -> dict[str, Any]:
        """Everything a submission may change, with ids replaced by names and positions."""
        session = self.session
        session.rollback()
        label = {self._annotator(who).id: who for who in WHO}
        code = session.get(Campaign, self.cid).completion_code
        rounds = session.scalars(select(Round).where(Round.campaign_id == self.cid)).all()
        number = {r.id: r.number for r in rounds}
        position = {
            i.id: i.position
            for i in session.scalars(select(Image).where(Image.round_id.in_(number)))
        }
        rankings = session.scalars(
            select(Ranking).where(Ranking.round_id.in_(number)).order_by(Ranking.id)
        ).all()
        tasks = session.scalars(select(Assignment).where(Assignment.round_id.in_(number))).all()
        annotators = [self._annotator(who) for who in WHO]
        return {
            "answers": self.answers,
            "rankings": [
                (
                    number[r.round_id],
                    label[r.annotator_id],
                    r.positions,
                    [position[i] for i in r.order],
                    r.attention_passed,
                    r.late,
                    r.created_at,
                )
                for r in rankings
            ],
            "annotators": [
                (
                    a.tasks_done,
                    a.attention_failed,
                    a.completion_code == code,
                    a.completion_code is None,
                    a.last_seen,
                )
                for a in annotators
            ],
            "rounds": sorted((r.number, r.status, r.n_rankings, r.last_ranking_at) for r in rounds),
            "tasks": sorted(
                (number[t.round_id], label[t.annotator_id], t.status, t.expires_at) for t in tasks
            ),
        }


LATER = T0 + dt.timedelta(seconds=61)  # past a 60 s lease
MUCH_LATER = T0 + dt.timedelta(minutes=5)


def normal(p: Play) -> None:
    p.lease("a")
    p.submit("a")
    p.lease("b")
    p.submit("b", order="attention first")


def late_but_welcome(p: Play) -> None:
    p.lease("a")
    p.submit("a", MUCH_LATER)  # nobody else took the round: stored, marked late


def late_taken_over(p: Play) -> None:
    p.lease("a")
    p.lease("b", LATER)
    p.submit("a", LATER)  # b holds the only slot now
    p.submit("b", LATER)
    p.submit("a", LATER)


def late_after_the_new_holders_lease_lapsed(p: Play) -> None:
    p.lease("a")
    p.lease("b", LATER)  # b took the slot over, then let its lease lapse too
    p.submit("a", MUCH_LATER)  # nobody holds or filled the slot now: stored, marked late
    p.submit("b", MUCH_LATER)  # the round has its quorum: gone


def repeated(p: Play) -> None:
    p.lease("a")
    p.submit("a")
    p.submit("a", order="attention first")  # another order for the same task: refused


def repeated_identical(p: Play) -> None:
    p.lease("a")
    p.submit("a")
    p.submit("a")  # a retry whose first answer was lost: answered as the first, stores nothing
    p.close()
    p.submit("a", MUCH_LATER)  # even after the round closed and the lease ran out


def foreign_and_unknown_tasks(p: Play) -> None:
    p.lease("a")
    p.submit("b", task_of="a")
    p.submit("b")  # b holds no task: an id that does not exist
    p.submit("a")


def bad_order_then_good(p: Play) -> None:
    p.lease("a")
    p.submit("a", order="too short")
    p.submit("a")


def closed_round(p: Play) -> None:
    p.lease("a")
    p.lease("b", LATER)
    p.submit("b", LATER)
    p.close()
    p.submit("a", LATER)


def both_checks_failed(p: Play) -> None:
    for number in (0, 1):
        p.lease("a")
        p.submit("a", order="attention first")  # over the attention policy: no code
        p.lease("b")
        p.submit("b")
        p.close(number)
        if number == 0:
            p.render(1)


def after_the_stop(p: Play) -> None:
    p.lease("a")
    p.lease("b")
    p.submit("a")
    p.stop()  # the round stays open, b's lease runs: b's ranking is refused, a's retry answered
    p.submit("b")
    p.submit("a")


def quota_met_over_two_rounds(p: Play) -> None:
    for number in (0, 1):
        p.lease("a")
        p.submit("a")
        if number == 0:
            p.close()
            p.render(1)


def short(answer: Any) -> str:
    if isinstance(answer, str):
        return answer
    _, late, passed, quorum = answer
    return "stored" + " late" * late + " inattentive" * (passed is False) + " quorum" * quorum


# name: (scenario, campaign settings, the answers in short)
SCENARIOS: dict[str, tuple[Callable[[Play], None], dict[str, Any], list[str]]] = {
    "normal": (normal, {"tasks_per_annotator": 1}, ["stored", "stored inattentive quorum"]),
    "late but welcome": (late_but_welcome, {"annotators_per_round": 1}, ["stored late quorum"]),
    "late, taken over": (
        late_taken_over,
        {"annotators_per_round": 1},
        ["Gone", "stored quorum", "Gone"],
    ),
    "late, the new holder's lease lapsed too": (
        late_after_the_new_holders_lease_lapsed,
        {"annotators_per_round": 1},
        ["stored late quorum", "Gone"],
    ),
    "repeated": (repeated, {}, ["stored", "Conflict"]),
    "repeated, identical": (
        repeated_identical,
        {"annotators_per_round": 1},
        ["stored quorum", "stored", "stored"],
    ),
    "foreign and unknown tasks": (
        foreign_and_unknown_tasks,
        {},
        ["Forbidden", "NotFound", "stored"],
    ),
    "bad order, then a good one": (bad_order_then_good, {}, ["InvalidInput", "stored"]),
    "closed round": (closed_round, {"annotators_per_round": 1}, ["stored quorum", "Gone"]),
    "the attention policy withholds the code": (
        both_checks_failed,
        {"tasks_per_annotator": 2},
        ["stored inattentive", "stored quorum", "stored inattentive", "stored quorum"],
    ),
    "after the campaign was stopped": (after_the_stop, {}, ["stored", "Conflict", "stored"]),
    "quota met over two rounds": (
        quota_met_over_two_rounds,
        {"annotators_per_round": 1, "tasks_per_annotator": 2},
        ["stored quorum", "stored quorum"],
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_hot_path_and_the_reference_path_agree(app, scenario):
    run, settings, expected = SCENARIOS[scenario]
    with app.app_context(), db.session_scope() as session:
        paths = ["reference", "fast, in steps"]
        if is_postgres(session):
            paths.append("fast, one statement")
        records = {}
        for path in paths:
            play = Play(app, session, path, **settings)
            run(play)
            records[path] = play.record()
    reference = records.pop("reference")
    assert [short(answer) for _, _, answer in reference["answers"]] == expected
    for path, record in records.items():
        assert record == reference, path


def test_the_completion_code_comes_with_the_ranking_that_meets_the_quota(app):
    with app.app_context(), db.session_scope() as session:
        play = Play(app, session, "fast, in steps", annotators_per_round=1, tasks_per_annotator=2)
        credit = []
        for number in (0, 1):
            play.lease("a")
            play.submit("a")
            credit.append(play.record()["annotators"][0][:3])
            if number == 0:
                play.close()
                play.render(1)
    assert credit == [(1, 0, False), (2, 0, True)]  # (tasks done, failed, has the code)


@pytest.mark.parametrize("path", ["reference", "fast, in steps"])
def test_the_attention_policy_withholds_the_code_on_every_path(app, path):
    with app.app_context(), db.session_scope() as session:
        play = Play(app, session, path, tasks_per_annotator=2)
        both_checks_failed(play)
        annotators = play.record()["annotators"]
    # (tasks done, checks failed, has the code, has none): a failed both, b passed both
    assert [a[:4] for a in annotators] == [(2, 2, False, True), (2, 0, True, False)]


def test_a_repeated_identical_ranking_is_answered_with_the_first_ones_id(app):
    with app.app_context(), db.session_scope() as session:
        play = Play(app, session, "fast, in steps")
        play.lease("a")
        task_id = play.tasks["a"]
        ids = play._order(task_id, "honest")
        token_hash = play.tokens["a"]
        session.commit()
        first = fast_submission.submit_by_token(session, token_hash, task_id, ids)
        again = fast_submission.submit_by_token(session, token_hash, task_id, ids)
        reference = submission.submit(session, play._annotator("a"), task_id, ids)
        assert again.ranking_id == reference.ranking_id == first.ranking_id
        assert (again.late, again.attention_passed) == (first.late, first.attention_passed)
        assert play.record()["rounds"][0][2] == 1  # counted once
