"""Cluster-wide metrics kept in Redis, so that any web process's /metrics shows the totals of every
web and worker process on every host (Prometheus' own multiprocess mode only sees one host).

Counters and histograms are fields of one Redis hash, incremented atomically; gauges are read at
scrape time from their sources (queues, PostgreSQL, the load monitor).
"""

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from apps.core.redis import key, sync_client

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096)

HELP: dict[str, tuple[str, str]] = {
    # name: (type, help)
    "dp_http_requests_total": ("counter", "HTTP requests by route, method and status."),
    "dp_http_request_duration_seconds": ("histogram", "HTTP time to response start, by route."),
    "dp_tasks_finished_total": (
        "counter",
        "Tasks that reached a final status, by kind and status.",
    ),
    "dp_task_retries_total": ("counter", "Failed attempts that will be retried, by kind."),
    "dp_task_wait_seconds": ("histogram", "Enqueue to start of the successful attempt, by queue."),
    "dp_task_run_seconds": ("histogram", "Start to finish of the successful attempt, by kind."),
    "dp_time_to_first_token_seconds": ("histogram", "Task start to the first token, by provider."),
    "dp_completion_tokens_total": ("counter", "Tokens generated, by provider."),
    "dp_prompt_tokens_total": ("counter", "Prompt tokens sent to models, by provider."),
    "dp_completion_tokens": ("histogram", "Tokens per answer, by provider."),
    "dp_priority_changes_total": (
        "counter",
        "Priority changes (downgrade, defer, aging, operator).",
    ),
    "dp_requests_refused_total": (
        "counter",
        "Requests refused early, by reason (rate, cap, shed).",
    ),
}


def _metrics_key() -> str:
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
                pipe.hincrbyfloat(_metrics_key(), field, amount)
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


def _format_value(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def render_recorded() -> list[str]:
    """Counters and histograms in the Prometheus text format (cumulative buckets)."""
    raw: Any = sync_client().hgetall(_metrics_key())
    plain: dict[str, dict[str, float]] = defaultdict(dict)
    buckets: dict[str, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for field_bytes, value_bytes in raw.items():
        field, value = field_bytes.decode(), float(value_bytes)
        parts = field.split("|")
        if parts[0].endswith("_bucket") and len(parts) == 3:
            bound = math.inf if parts[2] == "inf" else float(parts[2])
            buckets[parts[0].removesuffix("_bucket")][parts[1]][bound] = value
        else:
            plain[parts[0]][parts[1]] = value
    lines: list[str] = []
    declared: set[str] = set()
    for name in sorted(set(plain) | set(buckets)):
        base = name.removesuffix("_sum").removesuffix("_count")
        if base not in declared and base in HELP:
            kind, text = HELP[base]
            lines += [f"# HELP {base} {text}", f"# TYPE {base} {kind}"]
            declared.add(base)
        for label_text, per_bound in sorted(buckets.get(name, {}).items()):
            running = 0.0
            for bound in sorted(per_bound):
                running += per_bound[bound]
                le = "+Inf" if bound == math.inf else _format_value(bound)
                joined = f'{label_text},le="{le}"' if label_text else f'le="{le}"'
                lines.append(f"{name}_bucket{{{joined}}} {_format_value(running)}")
            if math.inf not in per_bound:
                joined = f'{label_text},le="+Inf"' if label_text else 'le="+Inf"'
                lines.append(f"{name}_bucket{{{joined}}} {_format_value(running)}")
        for label_text, value in sorted(plain.get(name, {}).items()):
            labels = f"{{{label_text}}}" if label_text else ""
            lines.append(f"{name}{labels} {_format_value(value)}")
    return lines


def counter_totals(name: str, label: str) -> dict[str, float]:
    """A counter's values summed by one of its labels, e.g. counter_totals(
    "dp_priority_changes_total", "change") -> {"downgraded": 3.0, "aged": 1.0}."""
    totals: dict[str, float] = {}
    prefix = f"{name}|"
    for field, value in sync_client().hscan_iter(_metrics_key(), match=f"{prefix}*"):
        labels = dict(
            part.split("=", 1) for part in field.decode().removeprefix(prefix).split(",") if part
        )
        key_value = labels.get(label, '""').strip('"')
        totals[key_value] = totals.get(key_value, 0.0) + float(value)
    return totals


def metrics_reset() -> None:
    sync_client().delete(_metrics_key())
