"""Recording metrics: counters and histograms, cluster-wide, as fields of one Redis hash
incremented atomically, so any web process's /metrics shows the totals of every web and
worker process on every host. Every layer records; rendering them is apps.operations.metrics.
"""

import logging
import math
from collections.abc import Iterable

from apps.core.redis import key, sync_client

logger = logging.getLogger(__name__)

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
        """Metrics must never break the work they describe: errors are logged, not raised."""
        if not self.fields:
            return
        try:
            pipe = sync_client().pipeline(transaction=False)
            for field, amount in self.fields:
                pipe.hincrbyfloat(metrics_key(), field, amount)
            pipe.execute()
        except Exception:
            logger.warning("could not record metrics", exc_info=True)
        self.fields = []


def metric_inc(name: str, labels: dict[str, str] | None = None, amount: float = 1) -> None:
    """Add to a counter."""
    batch = MetricsBatch()
    batch.inc(name, labels, amount)
    batch.send()


def metric_observe(
    name: str,
    value: float,
    labels: dict[str, str] | None = None,
    buckets: Iterable[float] = LATENCY_BUCKETS,
) -> None:
    """Record one observation in a histogram (one bucket, the sum and the count)."""
    batch = MetricsBatch()
    batch.observe(name, value, labels, buckets)
    batch.send()


def counter_totals(name: str, label: str) -> dict[str, float]:
    """A counter's values summed by one of its labels, e.g. counter_totals(
    "dp_priority_changes_total", "change") -> {"downgraded": 3.0, "aged": 1.0}."""
    totals: dict[str, float] = {}
    prefix = f"{name}|"
    for field, value in sync_client().hscan_iter(metrics_key(), match=f"{prefix}*"):
        labels = dict(
            part.split("=", 1) for part in field.decode().removeprefix(prefix).split(",") if part
        )
        key_value = labels.get(label, '""').strip('"')
        totals[key_value] = totals.get(key_value, 0.0) + float(value)
    return totals


def metrics_reset() -> None:
    sync_client().delete(metrics_key())
