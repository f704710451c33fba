"""Our RQ worker: non-forking, quick to notice crashes, with the model loaded once per process."""

import os
import socket
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from rq import SimpleWorker

from apps.core.redis import OPTIONS as REDIS_OPTIONS
from apps.scheduling.queues import QUEUE_ORDER, queue_for


class PlatformWorker(SimpleWorker):
    """A SimpleWorker: jobs run in the worker process itself.

    RQ's default Worker forks a work horse per job; a model loaded before fork() hangs in the
    child, and loading it per job costs ~0.7 s. Running jobs in-process keeps the model loaded
    once and saves the fork. A crash then takes the worker with it: the pool restarts it and the
    scheduler's watchdog hands its task to another worker.

    RQ's defaults notice a dead worker only after minutes (worker_ttl 420 s); ours are short.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("worker_ttl", settings.PLATFORM["WORKER_TTL_S"])
        kwargs.setdefault(
            "maintenance_interval", settings.PLATFORM["WORKER_MAINTENANCE_INTERVAL_S"]
        )
        super().__init__(*args, **kwargs)


def worker_connections_configure() -> None:
    """Worker database connections use WORKER_SYNCHRONOUS_COMMIT (see settings), set once per
    connection as a libpq option, before the first connection (and the pool) is made."""
    mode = settings.PLATFORM["WORKER_SYNCHRONOUS_COMMIT"]
    database = connections["default"]
    if database.vendor != "postgresql" or mode not in ("on", "off", "local", "remote_write"):
        return
    options = database.settings_dict.setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c synchronous_commit={mode}".strip()


def worker_build(
    *, queue_names: list[str] | None = None, name: str | None = None
) -> PlatformWorker:
    names = queue_names or list(QUEUE_ORDER)
    # A client of its own: RQ raises its socket timeout above the blocking dequeue's, which must
    # not change the process's shared client.
    connection = redis.Redis.from_url(settings.REDIS_URL, **REDIS_OPTIONS)
    queues = [queue_for(queue_name, connection) for queue_name in names]
    worker_name = name or f"{socket.gethostname()}.{os.getpid()}"
    return PlatformWorker(queues, connection=queues[0].connection, name=worker_name)
