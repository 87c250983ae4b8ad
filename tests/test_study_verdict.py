"""A study's verdict: every campaign's verdict answers pooled into one share with its Wilson
interval, the per-campaign spread, in GET /api/studies/<id> and the study's ``verdict`` table.

Runs on SQLite and on PostgreSQL (the ``app`` fixture of tests/fixtures/coordinator)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from rankloop.core.contracts import CampaignStatus, RoundStatus
from rankloop.core.verdict import Verdict, pool, spread, wilson_interval
from service import db, leasing, submission, verdicts
from service.auth import hash_token
from service.models import Annotator, Campaign, Round, utcnow
from tests.test_report_html import _parse, _report, _self_contained
from tests.test_studies import make_study


def test_pooling_adds_the_answers_and_the_spread_reads_each_interval():
    each = [
        Verdict(delivered=8),
        Verdict(start=5),
        Verdict(delivered=2, start=1, ties=1),
        Verdict(),
    ]
    pooled = pool(each)
    assert (pooled.delivered, pooled.start, pooled.ties, pooled.n) == (10, 6, 1, 16)
    assert pooled.interval == wilson_interval(10, 16)
    assert spread(each).to_dict() == {
        "campaigns_above": 1, "campaigns_below": 1, "campaigns_undecided": 1,
        "campaigns_unanswered": 1,
    }  # fmt: skip


def _ended(session, cid: str) -> None:
    """The campaign ran rounds 0 and 1 (different best images) and finished."""
    for number in (0, 1):
        prefix = f"campaigns/{cid}/rounds/{number:04d}"
        session.add(
            Round(
                campaign_id=cid,
                number=number,
                status=RoundStatus.CLOSED,
                best_key=f"{prefix}/best.png",
                best_thumb_key=f"{prefix}/thumbs/best.webp",
                state_key=f"{prefix}/state.npz",
            )
        )
    session.get(Campaign, cid).status = CampaignStatus.FINISHED
    session.commit()


def _answers(session, cid: str, delivered: int, start: int) -> None:
    """Fresh annotators answer the campaign's verdict round: ``delivered`` prefer what it
    delivered, ``start`` its start."""
    for n, prefer in enumerate(["delivered"] * delivered + ["starting"] * start):
        annotator = Annotator(
            campaign_id=cid, token_hash=hash_token(f"{cid}-{n}"), last_seen=utcnow()
        )
        session.add(annotator)
        session.commit()
        leased = leasing.lease(session, annotator)
        assert leased is not None
        task, round_, _ = leased
        assert round_.kind == "verdict"
        by_role = {image.role: image.id for image in round_.images}
        other = "starting" if prefer == "delivered" else "delivered"
        submission.submit(session, annotator, task.id, [by_role[prefer], by_role[other]])


def test_a_study_pools_its_campaigns_verdicts(app, owner, tmp_path):
    # A quorum above any campaign's answers: the verdict rounds stay open to every one of them.
    settings = {"m": 4, "annotators_per_round": 9, "rounds": 3, "tasks_per_annotator": 2}
    study = make_study(owner, prompts=["apple", "pear", "lemon"], settings=settings)
    apple, pear, lemon = (c["id"] for c in study["campaigns"])
    assert study["verdict"]["share"] is None and study["verdict"]["campaigns_unanswered"] == 3
    with app.app_context(), db.session_scope() as session:
        for cid in (apple, pear, lemon):
            _ended(session, cid)
        for cid, delivered, start in ((apple, 8, 0), (pear, 0, 5)):
            verdicts.request(session, cid)
            _answers(session, cid, delivered, start)
        assert (
            session.scalar(select(Round.id).where(Round.campaign_id == lemon, Round.number == 2))
            is None
        )

    shown = owner.get(f"/api/studies/{study['id']}").json
    low, high = wilson_interval(8, 13)
    assert shown["verdict"] == {
        "share": pytest.approx(8 / 13), "low": pytest.approx(low), "high": pytest.approx(high),
        "n": 13, "prefer_delivered": 8, "prefer_start": 5, "ties": 0, "from_non_steering": 13,
        "campaigns_above": 1, "campaigns_below": 1, "campaigns_undecided": 0,
        "campaigns_unanswered": 1, "summary": shown["verdict"]["summary"],
    }  # fmt: skip
    assert shown["verdict"]["summary"].startswith("62% of 13 answers prefer the delivered")
    per = {c["id"]: c["verdict"] for c in shown["campaigns"]}
    assert per[apple]["share"] == 1.0 and per[apple]["low"] == pytest.approx(
        wilson_interval(8, 8)[0]
    )
    assert per[pear]["share"] == 0.0 and per[pear]["n"] == 5
    assert per[lemon] == {"share": None, "low": None, "high": None, "n": 0}

    exported = owner.get(f"/api/studies/{study['id']}/export?format=verdict.jsonl")
    assert exported.status_code == 200, exported.data
    rows = [json.loads(line) for line in exported.data.decode().splitlines()]
    assert [(r["campaign_id"], r["prompt"], r["n"]) for r in rows] == [
        (apple, "apple", 8), (pear, "pear", 5), (lemon, "lemon", 0),
    ]  # fmt: skip

    # The study's report: the pooled verdict leads, then each campaign's in a table.
    out = _report(app, study["id"], tmp_path)
    page = _parse(out / f"report-study-{study['id']}.html")
    _self_contained(page)  # the forest plot, embedded
    assert page.sections[:3] == ["verdict", "figure", "campaigns"]
    text = (out / f"report-study-{study['id']}.md").read_text(encoding="utf-8")
    assert "62% of 13 answers prefer the delivered image" in text
    assert (
        "Per prompt: 1 better (interval above 50 %), 1 worse, 0 undecided, 1 without answers"
        in text
    )
    for prompt, n, share in (("apple", "8", "100 %"), ("pear", "5", "0 %"), ("lemon", "0", "–")):
        at = page.cells.index(prompt)
        assert (page.cells[at + 3], page.cells[at + 4]) == (n, share)
    assert (out / f"report-study-{study['id']}.pdf").read_bytes().startswith(b"%PDF")
