"""On RabbitMQ the task queues are quorum queues (``rankloop.core.settings.broker_settings``).

Both tiers declare ``coord`` and ``gpu`` alike, so whichever declares a queue first, the other's
declaration is equivalent: RabbitMQ refuses a queue declared again with other arguments, which
is also why the deploy guide (docs/guides/deploy.md) moves an upgrade from classic queues to a new vhost.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time

import pytest
from amqp.exceptions import PreconditionFailed
from celery import Celery
from kombu import Queue

from gpu_worker.celery_app import make_celery
from rankloop.core.contracts import COORD_QUEUE, GPU_QUEUE
from rankloop.core.settings import broker_settings, load_settings
from service.app import create_app

QUEUES = (COORD_QUEUE, GPU_QUEUE)


def both_tiers(tmp_path, monkeypatch, broker_url: str) -> tuple[Celery, Celery]:
    monkeypatch.setenv("RANKLOOP_BROKER_URL", broker_url)
    coordinator = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite'}"})
    return coordinator.extensions["celery"], make_celery({"RANKLOOP_BROKER_URL": broker_url})


def declarations(app: Celery) -> dict[str, tuple]:
    queues = {name: app.amqp.queues[name] for name in QUEUES}  # made on first use if missing
    return {
        name: (q.exchange.name, q.exchange.type, q.routing_key, q.durable, q.queue_arguments)
        for name, q in queues.items()
    }


def test_rabbitmq_task_queues_are_quorum_queues_declared_alike_by_both_tiers(tmp_path, monkeypatch):
    coordinator, worker = both_tiers(tmp_path, monkeypatch, "amqp://u:p@rabbitmq.test:5672//")
    assert declarations(coordinator) == declarations(worker)
    for name, (exchange, kind, key, durable, arguments) in declarations(worker).items():
        assert (exchange, kind, key, durable) == (name, "topic", name, True)
        assert arguments == {"x-queue-type": "quorum"}


def test_redis_queues_are_as_before(tmp_path, monkeypatch):
    coordinator, worker = both_tiers(tmp_path, monkeypatch, "redis://redis.test:6379/0")
    assert declarations(coordinator) == declarations(worker)
    for _, kind, _, _, arguments in declarations(worker).values():
        assert kind == "direct" and not arguments
    assert "task_default_queue_type" not in broker_settings(load_settings({}))


def test_rabbitmq_accepts_both_tiers_declarations_and_refuses_a_classic_one(
    tmp_path, monkeypatch, rabbitmq_vhost
):
    coordinator, worker = both_tiers(tmp_path, monkeypatch, rabbitmq_vhost)
    for app in (coordinator, worker):  # the second declaration of each queue is equivalent
        with app.connection_for_write() as connection:
            for name in QUEUES:
                app.amqp.queues[name].bind(connection.default_channel).declare()
    vhost = rabbitmq_vhost.rsplit("/", 1)[1]
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    types = dict(line.split("\t") for line in listed.splitlines()[1:] if "\t" in line)
    assert {name: types.get(name) for name in QUEUES} == {name: "quorum" for name in QUEUES}
    with worker.connection_for_write() as connection, pytest.raises(PreconditionFailed):
        Queue(GPU_QUEUE).bind(connection.default_channel).declare()  # a classic queue


@pytest.mark.slow  # a worker in a thread, and a retry through RabbitMQ's delayed delivery
@pytest.mark.timeout(120)
def test_a_retry_with_a_countdown_comes_back_through_a_quorum_queue(rabbitmq_vhost):
    """What the bookkeeping and render tasks do on a database or object-store error."""
    from celery.contrib.testing.worker import start_worker

    app = Celery("rankloop_retry_test")
    app.conf.update(
        broker_settings(load_settings({"RANKLOOP_BROKER_URL": rabbitmq_vhost})),
        task_default_queue=COORD_QUEUE,
        task_ignore_result=True,
    )
    runs: list[float] = []
    done = threading.Event()

    @app.task(bind=True, name="rankloop_retry_test.flaky", max_retries=1)
    def flaky(self) -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise self.retry(countdown=1)
        done.set()

    # The testing worker sets the root logger up for itself (level ERROR, its own handlers):
    # give the tests after this one back the logging they had.
    app.conf.worker_hijack_root_logger = False
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            flaky.apply_async()
            assert done.wait(60), f"no retry within 60 s ({len(runs)} run)"
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
    assert len(runs) == 2 and runs[1] - runs[0] >= 1
