"""Fixtures shared by the suite. Tests run on the real PostgreSQL (a test database per pytest
worker) and the real Redis (a database number per pytest worker, see settings.test)."""

from collections.abc import Iterator

import pytest
from django.conf import settings

from apps.core.metrics import metrics_discard
from apps.core.redis import sync_client
from apps.gateway.ratelimit import rate_limits_forget
from tests.processes import WebServer, platform_settle, run_web, run_worker


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


@pytest.fixture(autouse=True)
def _live_work_settled(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test whose tables are flushed after it ends leaves no work behind in the live
    processes (the session's daphne and a module's workers outlive it): see platform_settle.
    Set up after the database (pytest-django's fixtures come first), so this runs before the
    flush."""
    yield
    if _transactional(request):
        platform_settle()


def _transactional(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and (marker.kwargs.get("transaction") or marker.args[:1] == (True,)):
        return True
    return "transactional_db" in request.fixturenames or "live_server" in request.fixturenames


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
