"""Recording metrics: counters and histograms, cluster-wide, as fields of one Redis hash
incremented atomically, so any web process's /metrics shows the totals of every web and
worker process on every host. Every layer records; rendering them is apps.operations.metrics.

Each process adds up what it records in memory and sends the sums in one pipeline every
METRICS_FLUSH_S (a thread of its own; at exit too), so recording costs a request or a token no
round trip and no thread hop. Why not Prometheus's usual way (each process serves its own
figures and the scraper adds them up): web processes sit behind one load balancer, which would
answer a scrape from whichever process it picked, and workers serve no HTTP at all; one hash
makes any process's /metrics the whole cluster's. A process's /metrics sends its own sums first.

Labels take their values from closed sets (route patterns, known methods, task kinds), and the
hash takes no new field past METRICS_MAX_FIELDS: a refused one is counted in
`dp_metrics_dropped_total`, never an error.
"""

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Iterable

from django.conf import settings

from apps.core.redis import LuaScript, key, sync_client

logger = logging.getLogger(__name__)
# Fields kept while Redis cannot be reached (then the oldest sums are dropped, and said so).
MAX_PENDING_FIELDS = 50_000

# Counted when the hash is full and a new field is refused (see _ADD).
DROPPED_FIELD = "dp_metrics_dropped_total|"

# KEYS[1]: the metrics hash; ARGV: the most fields it may hold, the field that counts refusals,
# then field, amount pairs. A field already there always adds up; a new one only while the hash
# has room, so whatever labels reach it, the hash (which /metrics and load shedding read whole)
# stays bounded. Returns how many were refused.
_ADD = LuaScript("""
local limit, dropped_field = tonumber(ARGV[1]), ARGV[2]
local size = redis.call('HLEN', KEYS[1])
if redis.call('HEXISTS', KEYS[1], dropped_field) == 0 then
  limit = limit - 1  -- room for the refusals' own field
end
local dropped = 0
for i = 3, #ARGV, 2 do
  local known = redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1
  if known or size < limit then
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
    if not known then
      size = size + 1
    end
  else
    dropped = dropped + 1
  end
end
if dropped > 0 then
  redis.call('HINCRBY', KEYS[1], dropped_field, dropped)
end
return dropped
""")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096)


def metrics_key() -> str:
    return key("metrics")


def _labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return ""
    return ",".join(f'{name}="{_escape(str(value))}"' for name, value in sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsBatch:
    """Several counter and histogram updates sent to Redis in one round trip."""

    def __init__(self) -> None:
        self.fields: list[tuple[str, float]] = []

    def inc(self, name: str, labels: dict[str, str] | None = None, amount: float = 1) -> None:
        self.fields.append((f"{name}|{_labels(labels)}", amount))

    def observe(
        self,
        name: str,
        value: float,
        labels: dict[str, str] | None = None,
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ) -> None:
        bucket = next((bound for bound in buckets if value <= bound), math.inf)
        label_text = _labels(labels)
        self.fields += [
            (f"{name}_bucket|{label_text}|{bucket}", 1),
            (f"{name}_sum|{label_text}", value),
            (f"{name}_count|{label_text}", 1),
        ]

    def send(self) -> None:
        """Add the updates to this process's sums (sent within METRICS_FLUSH_S)."""
        if self.fields:
            _pending.add(self.fields)
        self.fields = []


class PendingMetrics:
    """What this process recorded and has not sent yet, and the thread that sends it."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.lock = threading.Lock()
        self.pid: int | None = None

    def add(self, fields: list[tuple[str, float]]) -> None:
        with self.lock:
            for field, amount in fields:
                self.sums[field] = self.sums.get(field, 0.0) + amount
            if self.pid != os.getpid():  # the first record of this process (or of a fork)
                self.pid = os.getpid()
                threading.Thread(target=self._run, name="metrics-flush", daemon=True).start()

    def _run(self) -> None:
        interval = float(settings.METRICS_FLUSH_S)
        while True:
            time.sleep(interval)
            self.flush()

    def flush(self) -> None:
        """Send the sums. Metrics must never break the work they describe: a failure is logged
        and the sums are kept for the next flush."""
        with self.lock:
            sums, self.sums = self.sums, {}
        if not sums:
            return
        try:
            args: list[str | float] = [int(settings.METRICS_MAX_FIELDS), DROPPED_FIELD]
            for field, amount in sums.items():
                args += [field, repr(amount)]
            _ADD(sync_client(), keys=[metrics_key()], args=args)
        except Exception:
            logger.warning("could not send metrics; kept for the next try", exc_info=True)
            with self.lock:
                for field, amount in sums.items():
                    self.sums[field] = self.sums.get(field, 0.0) + amount
                if len(self.sums) > MAX_PENDING_FIELDS:
                    logger.error("metrics dropped: Redis unreachable for too long")
                    self.sums.clear()

    def discard(self) -> None:
        with self.lock:
            self.sums.clear()


_pending = PendingMetrics()
atexit.register(_pending.flush)


def metrics_flush() -> None:
    """Send what this process has recorded now (before rendering /metrics, or at shutdown)."""
    _pending.flush()


def metric_inc(name: str, labels: dict[str, str] | None = None, amount: float = 1) -> None:
    """Add to a counter."""
    batch = MetricsBatch()
    batch.inc(name, labels, amount)
    batch.send()


def counter_totals(name: str, label: str) -> dict[str, float]:
    """A counter's values summed by one of its labels, e.g. counter_totals(
    "dp_priority_changes_total", "change") -> {"downgraded": 3.0, "aged": 1.0}. This process's
    unsent figures are sent first, so they count too."""
    _pending.flush()
    totals: dict[str, float] = {}
    prefix = f"{name}|"
    for field, value in sync_client().hscan_iter(metrics_key(), match=f"{prefix}*"):
        labels = dict(
            part.split("=", 1) for part in field.decode().removeprefix(prefix).split(",") if part
        )
        key_value = labels.get(label, '""').strip('"')
        totals[key_value] = totals.get(key_value, 0.0) + float(value)
    return totals


def metrics_discard() -> None:
    """Forget this process's unsent figures."""
    _pending.discard()
