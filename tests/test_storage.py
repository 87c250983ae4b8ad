"""The object store: LocalStore and S3Store (against a real SeaweedFS) behind one interface."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests

from rankloop.core.errors import InvalidInput, NotFound, StorageError
from rankloop.core.settings import load_settings
from rankloop.core.storage import LocalStore, round_prefix
from rankloop.stores import S3Store, store_from_config


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def store(request, tmp_path):
    if request.param == "local":
        return store_from_config({"STORE_URL": f"file://{tmp_path}"})
    seaweed = request.getfixturevalue("seaweed")
    return seaweed.store(seaweed.make_bucket())


def test_put_get_exists_delete(store):
    key = "campaigns/a/rounds/0000/images/00.png"
    assert not store.exists(key)
    store.put(key, b"\x89PNG bytes", "image/png")
    assert store.exists(key)
    assert store.get(key) == b"\x89PNG bytes"
    store.put(key, b"replaced")
    assert store.get(key) == b"replaced"
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(NotFound):
        store.get(key)
    store.delete(key)  # deleting a missing key is not an error, as in S3


def test_list_is_a_string_prefix_on_both_backends(store):
    keys = ["campaigns/a/x.txt", "campaigns/a/sub/y.txt", "campaigns/ab/z.txt", "other/w.txt"]
    for key in keys:
        store.put(key, key.encode())
    assert store.list("campaigns/a/") == ["campaigns/a/sub/y.txt", "campaigns/a/x.txt"]
    assert store.list("campaigns/a") == [
        "campaigns/a/sub/y.txt",
        "campaigns/a/x.txt",
        "campaigns/ab/z.txt",
    ]
    assert store.list("nothing/") == []
    assert store.list("") == sorted(keys)


@pytest.mark.parametrize("key", ["", "/abs/path", "a/../b", "dir/"])
def test_bad_keys_are_rejected(store, key):
    with pytest.raises(InvalidInput):
        store.put(key, b"x")


def test_round_prefix_is_unique_per_round():
    assert round_prefix("c1", 7) == "campaigns/c1/rounds/0007"
    assert round_prefix("c1", 7) != round_prefix("c1", 70)


def test_local_store_has_no_url_and_writes_atomically(tmp_path):
    store = LocalStore(tmp_path)
    assert store.url("a.png") is None
    payloads = [bytes([i]) * 200_000 for i in range(8)]

    def write(data):
        for _ in range(5):
            store.put("same/key.bin", data)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("same/key.bin") in payloads  # one whole object, never a mix
    assert store.list("same/") == ["same/key.bin"]  # no temporary files left visible


@pytest.mark.slow
def test_presigned_url_is_fetchable_and_anonymous_access_refused(seaweed):
    store = seaweed.store()
    key = f"campaigns/{uuid.uuid4().hex}/rounds/0000/images/00.png"
    store.put(key, b"image bytes", "image/png")
    url = store.url(key, expires_s=60)
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b"image bytes"
    assert response.headers["Content-Type"] == "image/png"

    anonymous = requests.get(f"{seaweed.endpoint_url}/{seaweed.bucket}/{key}", timeout=10)
    assert anonymous.status_code == 403
    listing = requests.get(f"{seaweed.endpoint_url}/{seaweed.bucket}", timeout=10)
    assert listing.status_code == 403
    upload = requests.put(
        f"{seaweed.endpoint_url}/{seaweed.bucket}/evil.txt", data=b"x", timeout=10
    )
    assert upload.status_code == 403
    assert not store.exists("evil.txt")


@pytest.mark.slow
def test_wrong_secret_is_a_storage_error(seaweed):
    store = S3Store(
        seaweed.bucket,
        endpoint_url=seaweed.endpoint_url,
        access_key=seaweed.access_key,
        secret_key="wrong-secret",
        max_attempts=1,
    )
    with pytest.raises(StorageError):
        store.put("a.txt", b"x")
    with pytest.raises(StorageError):
        store.get("a.txt")


def test_unreachable_endpoint_is_a_storage_error():
    store = S3Store(
        "bucket",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        access_key="a",
        secret_key="b",
        max_attempts=1,
    )
    for call in (lambda: store.exists("k"), lambda: store.get("k"), lambda: store.list("")):
        with pytest.raises(StorageError):
            call()


def test_store_from_environment_settings_and_from_a_config_mapping():
    env = {
        "RANKLOOP_STORE_URL": "s3://images",
        "RANKLOOP_S3_ENDPOINT_URL": "http://127.0.0.1:1",
        "RANKLOOP_S3_ACCESS_KEY": "key",
        "RANKLOOP_S3_SECRET_KEY": "secret",
        "RANKLOOP_S3_CREATE_BUCKET": "false",  # nothing listens there: no bucket call may run
        "UNRELATED": "x",
    }
    store = store_from_config(load_settings(env))
    assert isinstance(store, S3Store) and store.bucket == "images"
    assert store.client.meta.endpoint_url == "http://127.0.0.1:1"
    same = store_from_config({k.removeprefix("RANKLOOP_"): v for k, v in env.items()})
    assert isinstance(same, S3Store) and same.bucket == "images"


def test_store_url_default_is_the_local_store_under_var_dir(tmp_path):
    store = store_from_config({"VAR_DIR": str(tmp_path)})
    store.put("a/b.txt", b"x")
    assert (tmp_path / "objects" / "a" / "b.txt").read_bytes() == b"x"
