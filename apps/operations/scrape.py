"""GET /metrics: the recorded counters and histograms plus gauges read now from their sources."""

import hmac

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.batches.models import Batch, BatchStatus
from apps.core.errors import Unauthorized
from apps.delivery.gauge import streams_active
from apps.operations.metrics import render_recorded
from apps.operations.recent import Recent
from apps.scheduling.coordination.capacity import deployment_load, deployments_known
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.status import scheduler_status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _gauge(lines: list[str], name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        lines.append(f"{name}{{{labels}}} {value:g}" if labels else f"{name} {value:g}")


def gauges() -> list[str]:
    status = scheduler_status()
    lines: list[str] = []
    _gauge(
        lines,
        "dp_queue_depth",
        "Jobs waiting in each queue.",
        [(f'queue="{q.name}"', q.depth) for q in status.queues],
    )
    _gauge(
        lines,
        "dp_queue_oldest_age_seconds",
        "Age of the oldest job in each queue.",
        [(f'queue="{q.name}"', q.oldest_age_s or 0.0) for q in status.queues],
    )
    _gauge(
        lines,
        "dp_delayed_tasks",
        "Tasks waiting for a retry or deferred under load.",
        [("", status.delayed)],
    )
    _gauge(lines, "dp_workers", "Registered workers.", [("", len(status.workers))])
    _gauge(
        lines,
        "dp_workers_busy",
        "Workers running a task.",
        [("", sum(1 for w in status.workers if w.current_task))],
    )
    _gauge(
        lines,
        "dp_load_overloaded",
        "1 while the load monitor says overloaded.",
        [("", 1.0 if status.load.overloaded else 0.0)],
    )
    _gauge(
        lines,
        "dp_load_cpu_percent",
        "Mean CPU of the worker hosts.",
        [("", status.load.cpu_percent)],
    )
    counts = dict(
        Task.objects.filter(status__in=(*TaskStatus.ACTIVE, TaskStatus.DEAD))
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    _gauge(
        lines,
        "dp_tasks",
        "Tasks by status (active ones and dead letters).",
        [(f'status="{s}"', counts.get(s, 0)) for s in (*TaskStatus.ACTIVE, TaskStatus.DEAD)],
    )
    _gauge(
        lines,
        "dp_active_streams",
        "Clients reading an answer stream now.",
        [("", streams_active())],
    )
    _input_thresholds(lines)
    _batch_gauges(lines)
    _deployment_gauges(lines)
    return lines


def _deployment_gauges(lines: list[str]) -> None:
    """Each model deployment the scheduler has seen: in flight against capacity, waiting by
    priority, cooling down, cooldowns so far, tokens in the last minute."""
    loads = [deployment_load(name) for name in deployments_known()]
    _gauge(
        lines,
        "dp_deployment_capacity",
        "Sequences a deployment serves at once.",
        [(f'deployment="{load.name}"', load.capacity) for load in loads],
    )
    _gauge(
        lines,
        "dp_deployment_in_flight",
        "Answers a deployment is generating now.",
        [(f'deployment="{load.name}"', load.in_flight) for load in loads],
    )
    _gauge(
        lines,
        "dp_deployment_waiting",
        "Answers waiting for a deployment, by priority.",
        [
            (f'deployment="{load.name}",priority="{priority}"', count)
            for load in loads
            for priority, count in load.waiting.items()
        ],
    )
    _gauge(
        lines,
        "dp_deployment_cooling_down",
        "1 while a deployment cools down (0.5: probing, half open).",
        [
            (f'deployment="{load.name}"', {"open": 1.0, "half": 0.5}.get(load.state, 0.0))
            for load in loads
        ],
    )
    _gauge(
        lines,
        "dp_deployment_cooldowns",
        "Times a deployment was cooled down (since Redis last lost its state).",
        [(f'deployment="{load.name}"', load.cooldowns) for load in loads],
    )
    _gauge(
        lines,
        "dp_deployment_tokens_last_minute",
        "Tokens (prompt and answer) a deployment served in the last minute.",
        [(f'deployment="{load.name}"', load.tokens_last_minute) for load in loads],
    )


def _batch_gauges(lines: list[str]) -> None:
    batches = dict(
        Batch.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    _gauge(
        lines,
        "dp_batches",
        "Batches by status.",
        [(f'status="{status}"', batches.get(status, 0)) for status in BatchStatus.values],
    )
    bulk = dict(
        Task.objects.filter(bulk=True, status__in=TaskStatus.ACTIVE)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    _gauge(
        lines,
        "dp_batch_requests",
        "Requests of batches not yet ended: held back (pending), queued, running, retrying.",
        [(f'status="{status}"', bulk.get(status, 0)) for status in TaskStatus.ACTIVE],
    )


def _input_thresholds(lines: list[str]) -> None:
    """The input layer's limits (apps.gateway), so dashboards can draw them beside the load."""
    gateway = settings.GATEWAY
    _gauge(
        lines,
        "dp_shed_max_wait_seconds",
        "Load shedding: the longest expected wait for a worker a request accepts, by priority "
        "(without deadline_ms; high is never shed).",
        [(f'priority="{name}"', value) for name, value in gateway["SHED_MAX_WAIT_S"].items()],
    )
    _gauge(
        lines,
        "dp_shed_min_throughput_per_second",
        "Load shedding: the throughput assumed when less was measured.",
        [("", gateway["SHED_MIN_THROUGHPUT_PER_S"])],
    )
    _gauge(
        lines,
        "dp_global_rate_limit_per_second",
        "Requests per second accepted across all web processes (0: no ceiling).",
        [("", gateway["GLOBAL_RATE_LIMIT_PER_S"])],
    )


def _render() -> str:
    return "\n".join([*render_recorded(), *gauges()]) + "\n"


_recent_render = Recent(_render)


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    # As bytes: compare_digest refuses text outside ASCII (a header may carry any latin-1).
    given_token = value.strip().encode("utf-8", "surrogatepass")
    return scheme.lower() == "bearer" and hmac.compare_digest(given_token, token.encode())


async def metrics(request: HttpRequest) -> HttpResponse:
    """The cluster's figures in Prometheus's text format; with METRICS_TOKEN set, only for
    `Authorization: Bearer <token>`."""
    if not _authorized(request):
        response = JsonResponse(Unauthorized("A valid metrics token is required.").envelope())
        response.status_code = 401
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(await _recent_render.get_async(), content_type=CONTENT_TYPE)
