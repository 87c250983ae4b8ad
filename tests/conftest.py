"""Shared test set-up. Real services only: PostgreSQL, Redis and SeaweedFS run here for real.

Fixture modules live in ``tests/fixtures/``; each test session gets its own PostgreSQL
database and its own Redis key prefix, so that parallel sessions never see each other's data
or steal each other's Celery tasks.
"""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.seaweed",
    "tests.fixtures.workers",
    "tests.fixtures.coordinator",
    "tests.fixtures.browser",
]
