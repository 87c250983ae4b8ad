"""Where a single fault's seconds went, and the settings that bound them (issue 23: every fault
leaves annotators without work for under 15 s). The figures themselves are measured by the
fault tests (tests/test_faults.py, tests/test_faults_services.py), which print them."""

from __future__ import annotations

import datetime as dt

import pytest

from gpu_worker.tasks import store_retry_delay
from rankloop.core.contracts import HEARTBEAT_EVERY_S, heartbeat_key
from rankloop.core.errors import InvalidInput
from rankloop.core.settings import load_settings, settings_of
from rankloop.stores import S3Store
from service.models import utcnow
from tests.fixtures.coordinator import Owner
from tests.test_lost_render import resent


def beat_at(app, cid: str, seconds: float) -> None:
    """The round's render heartbeat, written ``seconds`` from now."""
    at = (utcnow() + dt.timedelta(seconds=seconds)).replace(tzinfo=dt.UTC).timestamp()
    app.extensions["rankloop_store"].put(heartbeat_key(cid, 0), f'{{"at": {at}}}'.encode())


def test_a_render_whose_worker_stopped_beating_6_s_ago_is_sent_again(app, owner: Owner):
    """A render worker killed mid-render: its heartbeat stops. Three beats missed
    (render_stale_after_s, 6 s) is a lost render; it took 15 s before, and a kill -9 left
    annotators without work for 20 s."""
    cid = owner.campaign(start=True, render_timeout_s=600)["id"]
    beat_at(app, cid, 20)  # the last beat, 20 s from now
    assert resent(app, cid, 20 + 3 * HEARTBEAT_EVERY_S - 1) == []  # a beat or two late: alive
    assert resent(app, cid, 27) == [f"{cid}/0"]
    events = owner.get(f"/api/campaigns/{cid}/events").json["events"]
    assert events[0]["data"]["reason"] == "heartbeat_stale"


def test_the_stale_threshold_is_a_setting(app, owner: Owner):
    cid = owner.campaign(start=True, render_timeout_s=600)["id"]
    settings_of(app).render_stale_after_s = 30.0
    beat_at(app, cid, 40)
    assert resent(app, cid, 60) == []
    assert resent(app, cid, 71) == [f"{cid}/0"]
    with pytest.raises(InvalidInput, match="RANKLOOP_RENDER_STALE_AFTER_S"):
        load_settings({"RANKLOOP_RENDER_STALE_AFTER_S": str(2 * HEARTBEAT_EVERY_S)})


def test_a_render_tries_the_store_again_within_seconds_for_the_whole_budget():
    """After the store's return a render goes on within store_retry_every_s (3 s; the
    countdown used to reach 15 s), and it rides out store_outage_budget_s in all."""
    settings = load_settings({})
    delays = []
    while (delay := store_retry_delay(len(delays), settings)) is not None:
        delays.append(delay)
    assert delays[:4] == [1.0, 2.0, 3.0, 3.0]
    assert max(delays) == settings.store_retry_every_s == 3.0
    assert settings.store_outage_budget_s <= sum(delays) < settings.store_outage_budget_s + 3
    short = load_settings(
        {"RANKLOOP_STORE_RETRY_EVERY_S": "2", "RANKLOOP_STORE_OUTAGE_BUDGET_S": "5"}
    )
    assert [store_retry_delay(n, short) for n in range(4)] == [1.0, 2.0, 2.0, None]


def test_the_store_client_retries_quickly_and_never_throttles_itself():
    """boto's "adaptive" mode rate-limits every later request of the process after a burst of
    503s (a store that is still starting): a render after an outage crawled. The settings say
    "standard", a few quick tries, and a connect timeout far below boto's 60 s."""
    settings = load_settings({})
    store = S3Store("bucket", endpoint_url="http://127.0.0.1:1", access_key="a", secret_key="b")
    config = store.client.meta.config
    assert config.retries == {"total_max_attempts": settings.s3_max_attempts, "mode": "standard"}
    assert config.connect_timeout == settings.s3_connect_timeout_s == 5.0
    tuned = S3Store("bucket", endpoint_url="http://127.0.0.1:1", retry_mode="adaptive",
                    max_attempts=7, connect_timeout_s=1.5)  # fmt: skip
    assert tuned.client.meta.config.retries == {"total_max_attempts": 7, "mode": "adaptive"}
    assert tuned.client.meta.config.connect_timeout == 1.5
