"""The render-and-update task end to end: the real Redis broker (private key prefix), real
``celery worker`` subprocesses, a real SeaweedFS; tasks are sent by name as the coordinator does.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest
from celery.exceptions import TimeoutError as CeleryTimeout
from PIL import Image

from gpu_worker.celery_app import TASK_NAME, make_celery
from gpu_worker.render import ATTENTION_SEED_OFFSET, attention_bytes, render_round
from rankloop.core.errors import CorruptedObject, InvalidInput, ModelUnavailable
from rankloop.core.optimizer import VERIFIED
from rankloop.core.storage import LocalStore, round_prefix
from tests.fixtures.workers import start_celery_worker

pytestmark = pytest.mark.slow

CPPN = {"generator": "cppn", "prompt": "", "m": 6, "seed": 11, "width": 96, "height": 96}
TINY = {"generator": "tiny-sd", "prompt": "a lighthouse at dusk", "m": 4, "seed": 5}


@pytest.fixture(scope="module")
def gpu_env(broker_env, seaweed) -> dict[str, str]:
    # One torch thread: two cores are shared by the whole test run.
    return {**broker_env, **seaweed.env(), "RANKLOOP_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def client(gpu_env):
    app = make_celery(gpu_env)
    yield app
    app.close()


@pytest.fixture(scope="module")
def worker(gpu_env, tmp_path_factory):
    running = start_celery_worker("gpu_worker.celery_app", gpu_env, tmp_path_factory.mktemp("w"))
    yield running
    running.stop()


def send(
    client, campaign_id, round_number=0, settings=None, previous_state_key=None, consensus=None
):
    return client.send_task(
        TASK_NAME,
        kwargs={
            "campaign_id": campaign_id,
            "round_number": round_number,
            "settings": settings,
            "previous_state_key": previous_state_key,
            "consensus": consensus,
        },
        queue="gpu",
    )


def new_campaign() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


def image_bytes(store, result) -> list[bytes]:
    return [store.get(entry["key"]) for entry in result["images"]]


def test_round_zero_writes_images_thumbs_state_and_manifest(client, worker, seaweed, tmp_path):
    campaign = new_campaign()
    result = send(client, campaign, 0, CPPN).get(timeout=120)
    store = seaweed.store()
    prefix = round_prefix(campaign, 0)

    assert result["campaign_id"] == campaign and result["round_number"] == 0
    assert result["manifest_key"] == f"{prefix}/manifest.json"
    assert json.loads(store.get(result["manifest_key"])) == result
    roles = [entry["role"] for entry in result["images"]]
    assert roles == ["candidate"] * 6 + ["attention"]
    assert [entry["index"] for entry in result["images"]] == list(range(7))
    for entry in result["images"]:
        image = Image.open(io.BytesIO(store.get(entry["key"])))
        assert (image.format, image.size, image.mode) == ("PNG", (96, 96), "RGB")
        thumb = Image.open(io.BytesIO(store.get(entry["thumb_key"])))
        assert thumb.format == "WEBP" and max(thumb.size) <= 256
    assert store.exists(result["state_key"])
    # 7 shown images and their thumbnails, the clean best with its thumbnail, state, manifest.
    assert len(store.list(prefix + "/")) == 7 * 2 + 2 + 2
    best = np.asarray(Image.open(io.BytesIO(store.get(result["best"]["key"]))))
    assert best.shape == (96, 96, 3)
    assert result["best"]["key"] not in {entry["key"] for entry in result["images"]}
    # The attention image is exactly the degraded copy of the current best, sized among the
    # candidates' files.
    candidates = [(store.get(e["key"]), store.get(e["thumb_key"])) for e in result["images"][:-1]]
    seed = CPPN["seed"] * 1_000_003 + 0 + ATTENTION_SEED_OFFSET
    attention = result["images"][-1]
    expected = attention_bytes(best, candidates, seed)
    assert (store.get(attention["key"]), store.get(attention["thumb_key"])) == expected

    # The worker's bytes equal an in-process render of the same inputs: images depend only on
    # the inputs, not on the process or the store.
    local = LocalStore(tmp_path)
    again = render_round(local, campaign, 0, CPPN)
    assert image_bytes(local, again) == image_bytes(store, result)
    assert local.get(again["state_key"]) == store.get(result["state_key"])


def test_tiny_sd_same_inputs_same_bytes(client, worker, seaweed):
    first, second, other = new_campaign(), new_campaign(), new_campaign()
    results = [
        send(client, first, 0, TINY),
        send(client, second, 0, TINY),
        send(client, other, 0, {**TINY, "seed": 6}),
    ]
    a, b, c = (r.get(timeout=180) for r in results)
    store = seaweed.store()
    assert image_bytes(store, a) == image_bytes(store, b)
    assert image_bytes(store, a) != image_bytes(store, c)
    assert len(set(image_bytes(store, a))) == len(a["images"])  # every candidate differs
    size = Image.open(io.BytesIO(store.get(a["images"][0]["key"]))).size
    assert size == (64, 64)  # tiny-sd's default size


def test_task_sent_three_times_makes_one_round(client, worker, seaweed):
    campaign = new_campaign()
    results = [send(client, campaign, 0, CPPN) for _ in range(3)]
    values = [r.get(timeout=120) for r in results]
    assert values[0] == values[1] == values[2]  # the later two returned the stored manifest
    keys = seaweed.store().list(round_prefix(campaign, 0) + "/")
    assert len(keys) == 7 * 2 + 2 + 2  # images, thumbnails, best and its thumbnail, state, manifest


def test_fields_from_a_newer_coordinator_are_accepted(client, worker):
    result = client.send_task(
        TASK_NAME,
        kwargs={"campaign_id": new_campaign(), "settings": CPPN, "priority_hint": "high"},
        queue="gpu",
    )
    assert result.get(timeout=120)["round_number"] == 0  # round_number defaults to 0


def test_round_chain_with_consensus(client, worker, seaweed, tmp_path):
    campaign = new_campaign()
    store = seaweed.store()
    r0 = send(client, campaign, 0, CPPN).get(timeout=120)
    # The consensus may include the attention image (index 6, ranked last): it is dropped.
    first = {"order": [4, 2, 0, 6]}
    r1 = send(client, campaign, 1, CPPN, r0["state_key"], first).get(timeout=120)
    n1 = sum(entry["role"] == "candidate" for entry in r1["images"])
    pairwise = [[0.0] * (n1 + 1) for _ in range(n1 + 1)]
    pairwise[1][0] = pairwise[1][2] = 2.0
    second = {"order": [1], "pairwise": pairwise}
    r2 = send(client, campaign, 2, CPPN, r1["state_key"], second).get(timeout=120)

    # The optimizer's schedule decides the kinds; the task reports them as an in-process
    # render of the same chain does, and advances the round.
    local = LocalStore(tmp_path)
    l0 = render_round(local, campaign, 0, CPPN)
    l1 = render_round(local, campaign, 1, CPPN, l0["state_key"], first)
    l2 = render_round(local, campaign, 2, CPPN, l1["state_key"], second)
    assert r0["kind"] == VERIFIED  # the default schedule
    assert [r["kind"] for r in (r0, r1, r2)] == [r["kind"] for r in (l0, l1, l2)]
    assert [r0["stats"]["round"], r1["stats"]["round"]] == [0, 1]
    assert r2["round_number"] == 2 and r2["stats"]["round"] == 2
    assert r1["state_key"] == f"{round_prefix(campaign, 1)}/state.npz"
    assert image_bytes(store, r1)[0] not in image_bytes(store, r0)
    # Replaying round 1 from the same state and consensus gives the same images (audit/fork).
    replay = send(client, new_campaign(), 1, CPPN, r0["state_key"], {"order": [4, 2, 0, 6]})
    assert image_bytes(store, replay.get(timeout=120)) == image_bytes(store, r1)


@pytest.mark.parametrize(
    ("settings", "error", "fragment"),
    [
        ({**CPPN, "generator": "stable-nope"}, InvalidInput, "settings.generator: Input should be"),
        (
            {"generator": "diffusers", "model": "/nonexistent/model-dir"},
            ModelUnavailable,
            "not on this server's model list",
        ),
        ({**CPPN, "m": 1}, InvalidInput, "settings.m"),
        ({**CPPN, "optimizer": {"learning_rate": 3}}, InvalidInput, "learning_rate"),
    ],
)
def test_bad_settings_fail_with_a_recorded_error(client, worker, settings, error, fragment):
    result = send(client, new_campaign(), 0, settings)
    with pytest.raises(error, match=fragment):
        result.get(timeout=120)
    assert result.state == "FAILURE"


def test_corrupted_state_fails_without_retry(client, worker, seaweed):
    campaign = new_campaign()
    key = f"{round_prefix(campaign, 0)}/state.npz"
    seaweed.store().put(key, b"definitely not an npz file")
    result = send(client, campaign, 1, CPPN, key, {"order": [0, 1]})
    with pytest.raises(CorruptedObject):
        result.get(timeout=120)
    assert result.state == "FAILURE"
    assert "Retry in" not in worker.log_text().split(result.id, 1)[-1]


def test_store_outage_is_retried_until_it_recovers(gpu_env, seaweed, client, tmp_path):
    """The object store is unreachable when the task starts (connection refused): the task is
    retried with backoff, and completes once the store answers again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**gpu_env, "RANKLOOP_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    queue = f"gpu-outage-{uuid.uuid4().hex[:6]}"
    worker = start_celery_worker("gpu_worker.celery_app", env, tmp_path, queues=[queue])
    try:
        result = client.send_task(
            TASK_NAME, kwargs={"campaign_id": new_campaign(), "settings": CPPN}, queue=queue
        )
        worker.wait_for_log("Retry in", timeout_s=120)
        target = urlsplit(seaweed.endpoint_url)
        with tcp_forwarder(port, target.hostname, target.port):
            value = result.get(timeout=120)
        assert seaweed.store().exists(value["manifest_key"])
        assert result.state == "SUCCESS"
    finally:
        worker.stop()


@contextlib.contextmanager
def tcp_forwarder(port: int, host: str, target_port: int):
    """Listen on ``port`` and relay every connection to ``host:target_port`` (the store
    'coming back' at the address the worker was given)."""
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(0.2)
    stop = threading.Event()

    def pipe(source, sink):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve():
        while not stop.is_set():
            try:
                client_side, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection((host, target_port))
            for a, b in ((client_side, upstream), (upstream, client_side)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_worker_killed_mid_task_round_completes_once(gpu_env, seaweed, client, tmp_path):
    """kill -9 the worker between the images and the manifest; another worker redoes the
    round from the redelivered message, writing the same bytes, and the round completes."""
    queue = f"gpu-kill-{uuid.uuid4().hex[:6]}"
    first = start_celery_worker("gpu_worker.celery_app", gpu_env, tmp_path / "a", queues=[queue])
    campaign = new_campaign()
    settings = {**CPPN, "test_delay_s": 3.0}
    result = client.send_task(
        TASK_NAME, kwargs={"campaign_id": campaign, "settings": settings}, queue=queue
    )
    store = seaweed.store()
    prefix = round_prefix(campaign, 0)
    deadline = time.monotonic() + 120
    while not store.exists(f"{prefix}/state.npz"):
        assert time.monotonic() < deadline, first.log_text()[-3000:]
        time.sleep(0.1)
    first.kill()  # inside the delay: images and state written, no manifest, no ack
    assert not store.exists(f"{prefix}/manifest.json")
    before = {key: store.get(key) for key in store.list(prefix + "/")}

    # A fresh worker restores the unacknowledged message (its visibility timeout is short).
    options = json.loads(gpu_env["RANKLOOP_BROKER_TRANSPORT_OPTIONS"])
    options["visibility_timeout"] = 1
    env = {**gpu_env, "RANKLOOP_BROKER_TRANSPORT_OPTIONS": json.dumps(options)}
    second = start_celery_worker("gpu_worker.celery_app", env, tmp_path / "b", queues=[queue])
    try:
        value = result.get(timeout=180)
    except CeleryTimeout:
        pytest.fail("round never completed after the kill:\n" + second.log_text()[-3000:])
    finally:
        second.stop()
    after = {key: store.get(key) for key in store.list(prefix + "/")}
    assert set(after) == {*before, f"{prefix}/manifest.json"}
    assert all(after[key] == data for key, data in before.items())  # same bytes rewritten
    assert json.loads(after[f"{prefix}/manifest.json"]) == value
    # The second worker took the task once and finished it (stopping it right after may log the
    # success a second time, as "succeeded before the worker was lost").
    log = second.log_text()
    assert log.count(f"Task {TASK_NAME}[{result.id}] received") == 1, log[-3000:]
    assert f"Task {TASK_NAME}[{result.id}] succeeded" in log
