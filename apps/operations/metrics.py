"""Rendering the cluster-wide metrics (recorded by apps.core.metrics in Redis, so that any web
process's /metrics shows the totals of every web and worker process on every host; Prometheus'
own multiprocess mode only sees one host). Gauges are read at scrape time from their sources
(queues, PostgreSQL, the load monitor).
"""

import math
from collections import defaultdict
from typing import Any

from apps.core.metrics import metrics_flush, metrics_key
from apps.core.redis import sync_client

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
    "dp_metrics_dropped_total": (
        "counter",
        "Metric updates dropped because the metrics store was full (METRICS_MAX_FIELDS).",
    ),
    "dp_requests_refused_total": (
        "counter",
        "Requests refused early, by reason (rate, cap, shed).",
    ),
    "dp_deployment_failures_total": (
        "counter",
        "Calls a model deployment failed, by deployment and outcome (failed, refused for load, "
        "unreachable).",
    ),
}


def _format_value(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def render_recorded() -> list[str]:
    """Counters and histograms in the Prometheus text format (cumulative buckets)."""
    metrics_flush()  # this process's own figures count too, up to now
    raw: Any = sync_client().hgetall(metrics_key())
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
