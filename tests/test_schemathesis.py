"""schemathesis against the coordinator (WSGI, no server) on SQLite and on PostgreSQL: every
check, every phase (examples, coverage, fuzzing, stateful through the document's links), with
the owner's and an annotator's credentials, and zero failures.

One pass of every phase, no time limit (schemathesis's ``max-time`` repeats the fuzzing and
stateful phases until it runs out: as many passes as the machine's speed allows, so a slower
machine tested less). SQLite gets the deep pass (6 examples an operation in fuzzing, and the
coverage phase's probes of undeclared methods); PostgreSQL the same phases shallower (2
examples, no undeclared-method probes: routing, not the database, answers those), which still
sends every operation its boundary values (the coverage phase), random bodies and the
document's links (stateful) through PostgreSQL's own statements. The seed is fixed, so a run is
repeatable.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from schemathesis.engine import Status, events, from_schema
from schemathesis.transport.wsgi import WSGITransport

from service import db
from tests.fixtures.coordinator import ADMIN, Owner, _truncate, make_app, render_round, stamp_head

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# What a well-formed request may still be refused with, because of a rule the document states
# in words (JSON Schema cannot relate two fields, or a request to the server's state):
# positive_data_acceptance otherwise accepts only 2xx, 3xx, 401, 403, 404, 409 and 429.
STATED_RULES = {
    # k <= m, RankSGD's rules between options, a round's size per generator: 422.
    ("POST", "/api/campaigns"): ["422"],
    # A preview takes a campaign's settings: the same rules (422).
    ("POST", "/api/previews"): ["422"],
    # The order names exactly the task's images (400); a lease past its time is gone (410).
    ("POST", "/api/tasks/{task_id}/ranking"): ["400", "410"],
    # A lease that is over is not extended by its images' loading time (410).
    ("POST", "/api/tasks/{task_id}/shown"): ["410"],
    # A campaign that has ended or does not recruit takes nobody (410); one of the participant
    # id parameters (PROLIFIC_PID, workerId, participant_id) is needed (400).
    ("GET", "/join/{campaign_id}"): ["400", "410"],
    # images=embed needs a Parquet format (400).
    ("GET", "/api/campaigns/{campaign_id}/export"): ["400"],
    # Items are a readable file of well-formed items, into a draft image set (400 names the
    # line; an optimizer campaign's or a started one's is 409).
    ("POST", "/api/campaigns/{campaign_id}/items"): ["400"],
    # A fork's settings are a campaign's: the same rules between fields (422).
    ("POST", "/api/campaigns/{campaign_id}/fork"): ["422"],
    # A study needs prompts or a file (422), each row a campaign the rules allow (422).
    ("POST", "/api/studies"): ["422"],
    # A duplicate's model must still be on the operator's list (422).
    ("POST", "/api/studies/{study_id}/duplicate"): ["422"],
    # As a campaign's link: a participant id is needed (400), an ended study takes nobody (410).
    ("GET", "/join/study/{study_id}"): ["400", "410"],
    # images=embed needs a Parquet format (400).
    ("GET", "/api/studies/{study_id}/export"): ["400"],
}
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request, tmp_path):
    """The coordinator on both databases, without rate limits: thousands of requests from one
    address and one key in a minute are what this run is, and the limits have tests of their
    own; with streams that end at once (tests/test_stream.py reads them live)."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    # Live streams end at once (their lifetime otherwise holds each case for 25 s).
    application = make_app(tmp_path, url, RATELIMIT_ENABLED=False, STREAM_LIFETIME_S=0)
    if url:
        _truncate(application)
    stamp_head(application)  # migrations at head: /readyz answers 200
    yield application
    db.get_engine(application).dispose()


@pytest.fixture(autouse=True)
def _wsgi_probe_fix(monkeypatch):
    # schemathesis 4.x: the ignored_auth check's probe hands requests' options (max_redirects,
    # verify, ...) to the WSGI transport without a session, and werkzeug refuses them.
    send = WSGITransport.send

    def patched(self, case, *, session=None, **kwargs):
        if session is None:
            for name in ("max_redirects", "verify", "cert", "proxies"):
                kwargs.pop(name, None)
        return send(self, case, session=session, **kwargs)

    monkeypatch.setattr(WSGITransport, "send", patched)


def annotator_token(app: Flask, owner: Owner) -> str:
    """A pool annotator's token, with a running campaign whose first round is open."""
    campaign = owner.campaign(start=True)
    render_round(app, campaign["id"], 0)
    (token,) = owner.annotators(campaign["id"], 1, pool=True)
    return token


def run_schemathesis(app: Flask, config: dict[str, Any]) -> list[str]:
    """Every failure of a full schemathesis run, as one line each (empty: none)."""
    schema = schemathesis.openapi.from_wsgi(
        "/api/openapi.json", app, config=schemathesis.Config.from_dict(config)
    )
    failures: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
            recorder = event.recorder
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        case = recorder.cases[case_id].value
                        response = recorder.find_response(case_id=case_id)
                        status = response.status_code if response is not None else None
                        failures.append(
                            f"{event.phase.name} {case.method} {case.path} {check.name} -> {status}: "
                            f"{check.failure_info.failure.title} "
                            f"{check.failure_info.code_sample[:300]!r}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"error: {event}")
    return sorted(set(failures))


# PostgreSQL's pass (the module's docstring).
SHALLOW = {
    "coverage": {"unexpected-methods": []},
    "fuzzing": {"generation": {"max-examples": 2, "database": "none"}},
}


def test_schemathesis_finds_nothing(app, owner):
    token = annotator_token(app, owner)
    deep = db.get_engine(app).dialect.name == "sqlite"
    config = {
        "seed": 13,
        "generation": {"max-examples": 6, "database": "none"},
        "phases": {} if deep else SHALLOW,
        "checks": {"enabled": True},
        "operations": [
            {
                "include-name": f"{method} {path}",
                "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + extra}},
            }
            for (method, path), extra in STATED_RULES.items()
        ],
        "auth": {"openapi": {"ownerKey": {"bearer": ADMIN}, "annotatorToken": {"bearer": token}}},
    }
    failures = run_schemathesis(app, config)
    assert not failures, "\n".join(failures)
