"""Garbage collection and thread switching for long-lived serving processes (web, workers)."""

import gc
import sys

from django.conf import settings


def gc_tune_for_serving() -> None:
    """Freeze what start-up made (modules, settings, URL patterns, views): the collector never
    walks those objects again. A full collection walks every tracked object, and every stream a
    web process holds stalls while it runs, so the fewer objects it walks the better. Call once,
    after start-up has imported what the process serves.

    Young collections start after GC_GEN0_THRESHOLD allocations (default 10,000; Python's
    is 700), so full ones come ~14 times less often (figures: docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    threshold = int(settings.PLATFORM["GC_GEN0_THRESHOLD"])
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
    switch_interval_set()


def switch_interval_set() -> None:
    """How long a thread may hold the GIL while another waits for it (SWITCH_INTERVAL_MS;
    Python's default is 5 ms). A serving process's event loop gives up the GIL at every socket
    call and must wait to get it back while a database thread compiles a query: with the
    default, each of its sends and receives could wait up to 5 ms behind them (seen in a profile
    of the web process under a burst of requests: 0.23 ms per send on average)."""
    sys.setswitchinterval(float(settings.PLATFORM["SWITCH_INTERVAL_MS"]) / 1000)
