"""One reader of the ``RANKLOOP_*`` settings for both tiers (rankloop.core.settings): the
coordinator and the render workers read the same values the same way and meet on one broker."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from gpu_worker import tasks as worker_tasks
from gpu_worker.celery_app import make_celery
from rankloop.core.contracts import GPU_QUEUE, RENDER_TASK
from rankloop.core.errors import InvalidInput
from rankloop.core.settings import Settings, broker_settings, load_settings, settings_of
from service import db
from service.app import create_app

INFRA = Path(__file__).resolve().parents[1] / "infra"


def coordinator(tmp_path: Path, **config):
    return create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite'}", **config})


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    # Quoted values lose their quotes, as systemd, compose and a shell read them.
    return {
        key.strip(): value.strip().removeprefix("'").removesuffix("'")
        for key, value in pairs
        if not key.startswith("#")
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [("false", False), ("False", False), ("0", False), ("true", True), ("1", True)],
)
def test_both_tiers_read_create_bucket_the_same(text, value, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKLOOP_S3_CREATE_BUCKET", text)
    assert load_settings().s3_create_bucket is value  # the worker's store reads these
    app = coordinator(tmp_path)
    assert settings_of(app).s3_create_bucket is value
    db.get_engine(app).dispose()


@pytest.mark.slow
@pytest.mark.parametrize(("text", "creates"), [("false", False), ("1", True), ("true", True)])
def test_create_bucket_false_creates_no_bucket_in_either_tier(
    seaweed, text, creates, tmp_path, monkeypatch
):
    buckets = {"coordinator": f"c-{uuid.uuid4().hex[:12]}", "worker": f"w-{uuid.uuid4().hex[:12]}"}
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RANKLOOP_S3_CREATE_BUCKET", text)

    monkeypatch.setenv("RANKLOOP_STORE_URL", f"s3://{buckets['coordinator']}")
    db.get_engine(coordinator(tmp_path)).dispose()
    monkeypatch.setenv("RANKLOOP_STORE_URL", f"s3://{buckets['worker']}")
    worker_tasks.worker_store.cache_clear()
    try:
        worker_tasks.worker_store()
    finally:
        worker_tasks.worker_store.cache_clear()

    existing = {b["Name"] for b in seaweed.store().client.list_buckets()["Buckets"]}
    assert (buckets["coordinator"] in existing) is creates
    assert (buckets["worker"] in existing) is creates


def test_embedded_default_broker_is_the_same_file_for_both_tiers(tmp_path, monkeypatch):
    """Started by hand without RANKLOOP_BROKER_URL, the coordinator's renders reach the worker."""
    monkeypatch.delenv("RANKLOOP_BROKER_URL", raising=False)
    monkeypatch.setenv("RANKLOOP_VAR_DIR", str(tmp_path / "var"))
    app = coordinator(tmp_path)
    worker = make_celery()
    assert worker.conf.broker_url == app.extensions["celery"].conf.broker_url
    assert worker.conf.broker_url.startswith("sqla+sqlite:///")

    campaign_id = uuid.uuid4().hex
    app.extensions["celery"].send_task(
        RENDER_TASK, kwargs={"campaign_id": campaign_id}, queue=GPU_QUEUE
    )
    with worker.connection_for_read() as connection:
        queue = connection.SimpleQueue(GPU_QUEUE)
        message = queue.get(timeout=10)
        message.ack()
        queue.close()
    assert message.headers["task"] == RENDER_TASK
    assert message.decode()[1]["campaign_id"] == campaign_id
    db.get_engine(app).dispose()
    app.extensions["celery"].close()
    worker.close()


def test_both_tiers_build_the_broker_part_alike(tmp_path, monkeypatch):
    env = {
        "RANKLOOP_BROKER_URL": "redis://broker.test:6379/3",
        "RANKLOOP_BROKER_TRANSPORT_OPTIONS": '{"global_keyprefix": "p:", "visibility_timeout": 9}',
        "RANKLOOP_RESULT_BACKEND": "redis://broker.test:6379/4",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    coord = coordinator(tmp_path).extensions["celery"].conf
    worker = make_celery(env).conf
    shared = broker_settings(load_settings(env))
    assert shared["broker_transport_options"]["global_keyprefix"] == "p:"
    assert shared["result_backend_transport_options"] == {"global_keyprefix": "p:"}
    for key, value in shared.items():
        assert coord[key] == value, key
        assert worker[key] == value, key


def test_example_env_files_share_broker_and_store():
    coordinator_env = load_settings(read_env_file(INFRA / "rankloop.env.example"))
    worker_env = load_settings(read_env_file(INFRA / "worker" / "worker.env.example"))
    assert broker_settings(coordinator_env) == broker_settings(worker_env)
    store = ("store_url", "s3_endpoint_url", "s3_access_key", "s3_secret_key", "s3_region")
    for field in store:
        assert getattr(coordinator_env, field) == getattr(worker_env, field), field
    assert coordinator_env.database_url.startswith("postgresql")


def test_overrides_win_over_the_environment_and_are_typed(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKLOOP_BASE_URL", "https://from-env.example")
    monkeypatch.setenv("RANKLOOP_INLINE_BOOKKEEPING", "false")
    monkeypatch.setenv("RANKLOOP_PRESIGN_EXPIRES_S", "60")
    app = coordinator(tmp_path, BASE_URL="https://override.example", TESTING=True)
    settings = settings_of(app)
    assert settings.base_url == "https://override.example"
    assert settings.inline_bookkeeping is False
    assert settings.presign_expires_s == 60
    assert app.testing is True  # Flask's own key, as given
    db.get_engine(app).dispose()


def test_explicit_environ_ignores_the_process_environment(monkeypatch):
    monkeypatch.setenv("RANKLOOP_ADMIN_TOKEN", "from-process")
    assert load_settings({}).admin_token is None
    assert load_settings({"RANKLOOP_ADMIN_TOKEN": "given"}).admin_token == "given"
    assert load_settings().admin_token == "from-process"


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("RANKLOOP_PRESIGN_EXPIRES_S", "soon", "valid integer"),
        ("RANKLOOP_BROKER_TRANSPORT_OPTIONS", "[1, 2]", "JSON object"),
        ("RANKLOOP_BROKER_TRANSPORT_OPTIONS", "{visibility", "not JSON"),
        ("RANKLOOP_S3_CREATE_BUCKET", "sometimes", "valid boolean"),
        ("RANKLOOP_RATELIMIT_ANNOTATOR_SCOPE", "global", "process"),
    ],
)
def test_a_bad_value_names_its_variable(name, text, fragment):
    with pytest.raises(InvalidInput, match=f"{name}: .*{fragment}"):
        load_settings({name: text})


def test_empty_optional_values_are_unset_and_paths_live_under_var_dir(tmp_path):
    settings = load_settings({"RANKLOOP_RESULT_BACKEND": "", "RANKLOOP_VAR_DIR": str(tmp_path)})
    assert settings.result_backend is None
    assert settings.database_url == f"sqlite:///{tmp_path / 'rankloop.sqlite'}"
    assert settings.store_url == str(tmp_path / "objects")
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"


def test_no_tier_reads_a_setting_from_the_flask_config_by_key():
    """Settings are fields of the one Settings object (service.config.app_settings,
    rankloop.core.settings.settings_of), never string keys of the Flask config; the app factory
    alone writes the one key Flask reads itself (MAX_CONTENT_LENGTH)."""
    root = Path(__file__).resolve().parents[1]
    by_key = re.compile(r"""\bconfig(\[|\.get\()\s*["'A-Z]|\w*app\.config\b""")
    offenders = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for package in ("service", "annotator_ui", "gpu_worker", "rankloop")
        for path in sorted((root / package).rglob("*.py"))
        if path.relative_to(root).as_posix() not in ("service/app.py",)
        and "migrations" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if by_key.search(line)
    ]
    assert offenders == []


def test_the_render_slot_default_is_written_once():
    assert Settings().render_slots_per_owner == 2
    assert load_settings({}).render_slots_per_owner == 2


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("RANKLOOP_PRESIGN_EXPIRES_S", "0", "greater than or equal to 60"),
        ("RANKLOOP_PRESIGN_EXPIRES_S", "100000000", "less than or equal to 604800"),
        ("RANKLOOP_RENDER_SLOTS_PER_OWNER", "1000000000", "less than or equal to 1000"),
        ("RANKLOOP_DATABASE_POOL_SIZE", "1000000", "less than or equal to 1000"),
        ("RANKLOOP_MAX_CONTENT_LENGTH", "1", "greater than or equal to 1024"),
        ("RANKLOOP_STREAM_LIFETIME_S", "1e300", "less than or equal to 3600"),
    ],
)
def test_an_absurd_duration_or_count_setting_is_refused_naming_it(name, text, fragment):
    with pytest.raises(InvalidInput, match=f"{name}: .*{fragment}"):
        load_settings({name: text})
