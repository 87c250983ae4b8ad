"""``rankloop replay``: a cppn campaign (and a tiny-sd one) rendered by the real render function
(in process, no broker), two rounds ranked, then each round rendered again from the database and
the store and compared with what was stored: the same bytes; a stored image changed afterwards is
caught.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gpu_worker.render import render_round
from rankloop.commands.fork import fork_command
from rankloop.commands.replay import replay_command, replay_round
from rankloop.core.errors import InvalidInput
from rankloop.core.settings import settings_of
from rankloop.core.storage import round_prefix
from service import db
from service.forking import fork
from service.models import Campaign, Image, Round
from service.render_messages import render_message
from service.rendering import round_rendered
from tests.fixtures.coordinator import Owner, bearer

M = 3


def _render(app, campaign_id: str, number: int) -> None:
    """What the worker does: render the round's message, report the result."""
    store = app.extensions["rankloop_store"]
    with app.app_context(), db.session_scope() as session:
        campaign = session.get(Campaign, campaign_id)
        round_ = session.scalar(
            select(Round).where(Round.campaign_id == campaign_id, Round.number == number)
        )
        message = render_message(campaign, round_)
        session.rollback()
        result = render_round(
            store, campaign_id, number, message.settings.model_dump(),
            message.previous_state_key,
            None if message.consensus is None else message.consensus.model_dump(),
        )  # fmt: skip
        assert round_rendered(session, result)


def _rank_round(app, tokens: list[str]) -> None:
    client = app.test_client()
    for variant, token in enumerate(tokens):
        task = client.get("/api/tasks/next", headers=bearer(token)).json
        ids = [i["id"] for i in task["images"]]
        order = sorted(ids) if variant == 0 else sorted(ids)[::-1]
        posted = client.post(f"/api/tasks/{task['task_id']}/ranking", json={"order": order},
                             headers=bearer(token))  # fmt: skip
        assert posted.status_code == 201, posted.json


def _two_rounds(app, **settings) -> str:
    """A finished campaign of two rounds, rendered in process."""
    owner = Owner(app.test_client())
    campaign = owner.campaign(start=True, width=64, height=64, m=M, seed=5,
                              annotators_per_round=2, rounds=2, tasks_per_annotator=2,
                              **settings)  # fmt: skip
    tokens = owner.annotators(campaign["id"], 2)
    for number in range(2):
        _render(app, campaign["id"], number)
        _rank_round(app, tokens)
    return campaign["id"]


@pytest.fixture
def cppn_campaign(sqlite_app) -> str:
    return _two_rounds(sqlite_app, generator="cppn")


def _images(app, campaign_id: str, number: int) -> dict[int, bytes]:
    store = app.extensions["rankloop_store"]
    with db.session_scope(app) as session:
        round_id = session.scalar(
            select(Round.id).where(Round.campaign_id == campaign_id, Round.number == number)
        )
        return {
            i.index: store.get(i.key)
            for i in session.scalars(select(Image).where(Image.round_id == round_id))
        }


def test_replay_gives_the_same_bytes_and_catches_a_change(sqlite_app, cppn_campaign):
    cid = cppn_campaign
    sessions = sqlite_app.extensions["rankloop_sessionmaker"]
    store = sqlite_app.extensions["rankloop_store"]
    for number in range(2):  # round 1 starts from round 0's state and consensus
        checks = replay_round(sessions, store, cid, number)
        assert len(checks) == M + 2  # candidates, the attention copy, the current best
        assert all(c.same_bytes and c.max_pixel_difference == 0 for c in checks), checks

    with db.session_scope(sqlite_app) as session:
        round_id = session.scalar(
            select(Round.id).where(Round.campaign_id == cid, Round.number == 1)
        )
        key = session.scalars(select(Image.key).where(Image.round_id == round_id)).first()
    assert key is not None
    store.put(key, _shifted(store.get(key)), "image/png")  # one pixel changed after the fact
    arguments = [cid, "--round", "1", "--url", settings_of(sqlite_app).database_url,
                 "--store", settings_of(sqlite_app).store_url]  # fmt: skip
    result = CliRunner().invoke(replay_command, arguments)
    assert result.exit_code == 1 and "does not replay" in result.output, result.output
    assert CliRunner().invoke(replay_command, [*arguments, "--tolerance", "255"]).exit_code == 0


@pytest.mark.slow
def test_tiny_sd_replays_bit_exact_on_the_cpu(sqlite_app):
    """tiny-sd (the real diffusers pipeline, random weights built from configs) replays to the
    same bytes at the thread count it rendered with, which the manifest records and the replay
    uses by default. At another thread count oneDNN's kernels sum in another order and a pixel
    may move by one level: that is the stated tolerance."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    sessions = sqlite_app.extensions["rankloop_sessionmaker"]
    store = sqlite_app.extensions["rankloop_store"]
    try:
        torch.set_num_threads(1)  # two cores are shared by the whole test run
        cid = _two_rounds(sqlite_app, generator="tiny-sd", steps=2)
        torch.set_num_threads(2)  # the replay goes back to the recorded count by itself
        for number in range(2):  # round 1 starts from round 0's state and consensus
            checks = replay_round(sessions, store, cid, number)
            assert len(checks) == M + 2
            assert all(c.same_bytes for c in checks), checks
        assert torch.get_num_threads() == 2
        arguments = [cid, "--round", "1", "--threads", "2", "--tolerance", "1",
                     "--url", settings_of(sqlite_app).database_url,
                     "--store", settings_of(sqlite_app).store_url]  # fmt: skip
        result = CliRunner().invoke(replay_command, arguments)
        assert result.exit_code == 0 and "round 1 replays" in result.output, result.output
    finally:
        torch.set_num_threads(threads)


def test_fork_starts_from_the_round_and_continues(sqlite_app, cppn_campaign):
    with sqlite_app.app_context(), db.session_scope() as session:
        with pytest.raises(InvalidInput, match="keeps m"):
            fork(session, cppn_campaign, 1, {"m": 5})
        session.rollback()
        outcome = fork(session, cppn_campaign, 1,
                       {"prompt": "a green pear", "annotators_per_round": 1, "rounds": 3})  # fmt: skip
    forked = outcome.campaign_id
    assert [(m.campaign_id, m.round_number) for m in outcome.renders] == [(forked, 1)]
    _render(sqlite_app, forked, 1)
    # Before anyone ranks, the fork's round 1 is the source's round 1 (the same state and seed).
    assert _images(sqlite_app, forked, 1) == _images(sqlite_app, cppn_campaign, 1)
    owner = Owner(sqlite_app.test_client())
    shown = owner.get(f"/api/campaigns/{forked}").json
    assert shown["prompt"] == "a green pear" and shown["status"] == "running"
    # The fork's completion code is its own: the source's participants know the source's.
    source_code = owner.get(f"/api/campaigns/{cppn_campaign}").json["completion_code"]
    assert shown["completion_code"] and shown["completion_code"] != source_code
    with sqlite_app.app_context(), db.session_scope() as session:
        other = fork(session, cppn_campaign, 1, {"completion_code": "NEWCREW1"})
    assert owner.get(f"/api/campaigns/{other.campaign_id}").json["completion_code"] == "NEWCREW1"
    _rank_round(sqlite_app, owner.annotators(forked, 1))  # a quorum of one closes the round
    shown = owner.get(f"/api/campaigns/{forked}").json
    assert shown["current_round"]["number"] == 2 and shown["current_round"]["status"] == "rendering"
    _render(sqlite_app, forked, 2)
    with db.session_scope(sqlite_app) as session:
        rounds = session.scalars(select(Round).where(Round.campaign_id == forked)).all()
        assert sorted(r.number for r in rounds) == [1, 2]
        second = next(r for r in rounds if r.number == 2)
        assert second.previous_state_key == f"{round_prefix(forked, 1)}/state.npz"
        assert second.status == "open"


def _shifted(png: bytes) -> bytes:
    import io

    from PIL import Image as PILImage

    image = PILImage.open(io.BytesIO(png)).convert("RGB")
    pixels = image.load()
    r, g, b = pixels[0, 0]
    pixels[0, 0] = ((r + 9) % 256, g, b)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_fork_command(sqlite_app, cppn_campaign, monkeypatch):
    for name in ("DATABASE_URL", "STORE_URL", "BROKER_URL"):
        monkeypatch.setenv(f"RANKLOOP_{name}", getattr(settings_of(sqlite_app), name.lower()))
    result = CliRunner().invoke(
        fork_command, [cppn_campaign, "--round", "1", "--set", "rounds=4", "--prompt", "a fig"]
    )
    assert result.exit_code == 0, result.output
    forked = result.output.strip()
    shown = Owner(sqlite_app.test_client()).get(f"/api/campaigns/{forked}").json
    assert shown["prompt"] == "a fig" and shown["settings"]["rounds"] == 4
    assert shown["current_round"]["number"] == 1


def test_the_fork_api_refuses_what_the_state_depends_on(sqlite_app, cppn_campaign):
    owner = Owner(sqlite_app.test_client())
    url = f"/api/campaigns/{cppn_campaign}/fork"
    refused = owner.post(url, json={"round": 1, "m": 5})
    assert refused.status_code == 422 and "m" in refused.json["error"]["message"]
    missing = owner.post(url, json={"round": 7})
    assert missing.status_code == 409
    made = owner.post(url, json={"round": 1, "rounds": 3})
    assert made.status_code == 201
    assert made.json["current_round"]["number"] == 1 and made.json["settings"]["rounds"] == 3


PROLIFIC = "https://app.prolific.com/submissions/complete?cc="


def test_a_fork_gets_a_completion_code_of_its_own_unless_its_owner_names_one(sqlite_app):
    """The source's participants know the source's code (and its completion URL names it): a
    fork that carried it over would take their claims as the fork's work."""
    owner = Owner(sqlite_app.test_client())
    source = owner.campaign(start=True, width=64, height=64, m=M, seed=5,
                            completion_url=f"{PROLIFIC}C0FFEE12")["id"]  # fmt: skip
    plain = owner.campaign(start=True, width=64, height=64, m=M, seed=5,
                           completion_url="https://study.example.org/done")["id"]  # fmt: skip
    for cid in (source, plain):
        _render(sqlite_app, cid, 0)
    url = f"/api/campaigns/{source}/fork"
    own = owner.post(url, json={"round": 0, "annotators_per_round": 1})
    assert own.status_code == 201, own.json
    assert own.json["completion_code"] not in ("C0FFEE12", None)
    assert own.json["settings"].get("completion_url") is None  # it named the source's code
    named = owner.post(url, json={"round": 0, "completion_code": "NEWCREW1"}).json
    assert (named["completion_code"], named["settings"].get("completion_url")) == ("NEWCREW1", None)
    moved = owner.post(url, json={"round": 0, "completion_url": f"{PROLIFIC}F00D0001"}).json
    assert moved["completion_code"] == "F00D0001"
    assert moved["settings"]["completion_url"] == f"{PROLIFIC}F00D0001"
    # Without a code in its URL the source's URL carries over; the code still does not.
    code = owner.get(f"/api/campaigns/{plain}").json["completion_code"]
    forked = owner.post(f"/api/campaigns/{plain}/fork", json={"round": 0}).json
    assert forked["completion_code"] != code
    assert forked["settings"]["completion_url"] == "https://study.example.org/done"
