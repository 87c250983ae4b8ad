"""Shared test set-up. Real services only: PostgreSQL, Redis and SeaweedFS run here for real.

Fixture modules live in ``tests/fixtures/``; each test session gets its own PostgreSQL
database and its own Redis key prefix, so that parallel sessions never see each other's data
or steal each other's Celery tasks.

Every test that reaches one of those services is marked ``services`` here, from the fixtures it
asks for, so that ``make test-unit`` (``-m "not services and ..."``) runs without any of them.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.seaweed",
    "tests.fixtures.workers",
    "tests.fixtures.coordinator",
    "tests.fixtures.browser",
]

# The fixtures that start or reach a real service (directly or through another fixture).
SERVICE_FIXTURES = frozenset(
    {
        "postgres_url",
        "redis_url",
        "redis_prefix",
        "broker_env",
        "seaweed",
        "celery_worker_factory",
        "rabbitmq_vhost",
    }
)
# Fixtures parametrised by backend fetch the service fixture on demand (getfixturevalue), which
# no fixture closure shows: these parameter values name a backend that is a real service.
SERVICE_PARAMS = frozenset({"postgresql", "s3"})


def needs_services(item: pytest.Item) -> bool:
    if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(value, str) and value in SERVICE_PARAMS for value in params)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_services(item):
            item.add_marker(pytest.mark.services)
