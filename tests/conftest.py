"""Fixtures shared by the suite. Tests run on the real PostgreSQL (a test database per pytest
worker) and the real Redis (a database number per pytest worker, see settings.test)."""

import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.management.base import CommandError
from django.test import TransactionTestCase

from apps.core.metrics import metrics_discard
from apps.core.redis import sync_client
from apps.gateway.ratelimit import rate_limits_forget
from tests.processes import WebServer, run_web, run_worker


def _delete_platform_keys() -> None:
    # This process's unsent figures belong to the test that recorded them, and the buckets it
    # knows to be empty are about to be reset.
    metrics_discard()
    rate_limits_forget()
    client = sync_client()
    for pattern in (f"{settings.REDIS_KEY_PREFIX}*", "rq:queue:*", "rq:job:*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with no platform keys, queues or jobs in its Redis database."""
    _delete_platform_keys()
    yield
    _delete_platform_keys()


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_deadlocks() -> Iterator[None]:
    """The session's live daphne and workers keep writing (housekeeping, a task finishing) while
    a transactional test's tables are flushed. PostgreSQL may then pick the flush's TRUNCATE as
    the victim of a deadlock with them; it is tried again, as the other side would be."""
    original = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                original(self)
                return
            except CommandError as error:
                if "deadlock detected" not in str(error.__cause__) or attempt == 4:
                    raise
                time.sleep(0.2)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[attr-defined]
    yield
    TransactionTestCase._fixture_teardown = original  # type: ignore[attr-defined]


@pytest.fixture(scope="session", autouse=True)
def _flush_test_redis_at_end() -> Iterator[None]:
    yield
    sync_client().flushdb()


@pytest.fixture(scope="session")
def live_web(django_db_setup: None, django_db_blocker: object) -> Iterator[WebServer]:
    """daphne serving the platform on a free loopback port, for the whole session."""
    with run_web() as server:
        yield server


@pytest.fixture(scope="module")
def live_worker(django_db_setup: None) -> Iterator[object]:
    """One worker process on all queues (with the built-in model loaded), for one test module.

    Not for the whole session: tests that run tasks in-process must not race a live worker for
    the same jobs, and modules run one after another in a pytest process.
    """
    with run_worker() as process:
        yield process
