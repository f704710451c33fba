"""Test settings: the real PostgreSQL and Redis, isolated per pytest-xdist worker.

pytest-django creates `test_<name>` databases (one per xdist worker). Redis gets a separate database
number per xdist worker, so parallel test processes never see each other's queues or keys.
"""

import os

from .base import *  # noqa: F403
from .base import PLATFORM, env

_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_worker_index = int(_xdist_worker.removeprefix("gw") or 0)
# Redis databases 8..15 are the tests'; 0 stays the developer's. For several test runs side by
# side (each with its own DATABASE_URL too): TEST_REDIS_DB pins one database (a run of a single
# pytest process), TEST_REDIS_DB_FIRST moves the first of a parallel run's databases.
_redis_db = env.int(
    "TEST_REDIS_DB", default=env.int("TEST_REDIS_DB_FIRST", default=8) + (_worker_index % 8)
)
_redis_base = env.str("TEST_REDIS_BASE_URL", default="redis://127.0.0.1:6379")
REDIS_URL = f"{_redis_base}/{_redis_db}"
REDIS_KEY_PREFIX = "dp-test:"
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600} for name in ("high", "medium", "low")}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "dp-test:asgi"},
    }
}

# In-process tests call async views inside their transaction: database work stays in the thread
# that holds it. Platform processes started by the tests get the pool (tests/processes.py).
DB_ASYNC_THREADS = env.int("DB_ASYNC_THREADS", default=0)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PLATFORM = {
    **PLATFORM,
    "RETRY_BACKOFF_BASE_S": 0.05,
    "RETRY_BACKOFF_MAX_S": 0.5,
    # Tests check answers piece by piece; the window has tests of its own (which set it).
    "STREAM_COALESCE_MS": env.float("STREAM_COALESCE_MS", default=0.0),
}

# Tests read /metrics and /readyz right after what they check; the cache has a test of its own.
OPERATIONS_FIGURES_CACHE_S = env.float("OPERATIONS_FIGURES_CACHE_S", default=0.0)
# Processes send their figures as deployed, more often: tests wait for them (see test_metrics).
METRICS_FLUSH_S = env.float("METRICS_FLUSH_S", default=0.1)
# Tests send many requests as one key, one user and one address; the tests of each limit set
# it themselves. The defaults people run with are base.py's.
GATEWAY = {
    **GATEWAY,  # noqa: F405
    "KEY_RATE_LIMIT_PER_S": env.float("KEY_RATE_LIMIT_PER_S", default=0.0),
    "USER_RATE_LIMIT_PER_S": env.float("USER_RATE_LIMIT_PER_S", default=0.0),
    "USER_RATE_LIMIT_BURST": env.int("USER_RATE_LIMIT_BURST", default=0),
    "ANON_RATE_LIMIT_PER_S": env.float("ANON_RATE_LIMIT_PER_S", default=0.0),
}
