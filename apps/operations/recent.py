"""Figures that cost queries, computed at most once per OPERATIONS_FIGURES_CACHE_S per process.

`/metrics` and `/readyz` are public and unthrottled (probes and scrapers must always get in), so
each hit must not cost PostgreSQL and Redis several queries: within the window every caller gets
the last result, and callers that arrive together while it is stale share one computation.
"""

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings

from apps.core.db import db_sync_to_async

T = TypeVar("T")


class Recent(Generic[T]):
    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = float("-inf")
        self._get_async = db_sync_to_async(self.get)

    def _fresh(self) -> bool:
        return time.monotonic() - self._at < float(settings.OPERATIONS_FIGURES_CACHE_S)

    def get(self) -> T:
        with self._lock:  # one computation at a time; the others then read its result
            if self._value is None or not self._fresh():
                self._value = self._compute()
                self._at = time.monotonic()
            return self._value

    async def get_async(self) -> T:
        value = self._value
        if value is not None and self._fresh():
            return value  # no thread hop while fresh
        return await self._get_async()
