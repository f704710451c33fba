"""Which deployments a model task may run on (TaskKind.route), and the provider client for the
one it holds."""

from django.conf import settings

from apps.applications.selectors import app_get
from apps.deployments.selectors import AppRoute, Endpoint, app_route, endpoint_get
from apps.generation.provider_settings import endpoint_provider
from apps.providers.base import Provider
from apps.scheduling.coordination.capacity import Route, Target
from apps.scheduling.models import Task
from apps.scheduling.tasks.errors import PermanentTaskError

# Set on a task's payload when its prompt did not fit a deployment's context window: only
# deployments whose window is at least this large may take it.
MIN_CONTEXT = "min_context"


def _target(endpoint: Endpoint) -> Target:
    return Target(
        name=endpoint.name,
        capacity=endpoint.max_concurrency,
        reserved_for_high=endpoint.reserved_for_high,
        bulk_reserve=int(settings.PLATFORM["BULK_RESERVED_SEQUENCES"]),
        weight=endpoint.weight,
        rpm_limit=endpoint.rpm_limit,
        tpm_limit=endpoint.tpm_limit,
    )


def model_task_route(task: Task) -> Route | None:
    """The app's deployments whose context window fits what the task needs; None when none
    serves it (the run then fails it clearly: see serving_endpoint)."""
    if task.app_id is None:
        return None
    app = app_get(app_id=task.app_id)
    if app is None:
        return None
    needed = int((task.payload or {}).get(MIN_CONTEXT) or 0)
    served = app_route(app_id=task.app_id)
    primaries = tuple(_target(e) for e in served.primaries if e.context_window >= needed)
    fallbacks = tuple(_target(e) for e in served.fallbacks if e.context_window >= needed)
    if not primaries and not fallbacks:
        return None
    return Route(
        app=str(task.app_id),
        share_weight=app.share_weight,
        primaries=primaries,
        fallbacks=fallbacks,
        bulk=task.bulk,
        variant=f"ctx{needed}" if needed else "",
    )


def serving_endpoint(task: Task, deployment: str) -> Endpoint:
    """The deployment the attempt holds; a clear error when no deployment serves the task."""
    endpoint = endpoint_get(name=deployment) if deployment else None
    if endpoint is not None:
        return endpoint
    route = app_route(app_id=task.app_id) if task.app_id else AppRoute((), ())
    needed = int((task.payload or {}).get(MIN_CONTEXT) or 0)
    if needed and route.all:
        largest = max(endpoint.context_window for endpoint in route.all)
        raise PermanentTaskError(
            f"The prompt needs {needed} tokens of context and the largest context window of "
            f"this app's models is {largest}: shorten the query, the conversation or the "
            "app's instructions.",
            code="completion_request_error",
        )
    raise PermanentTaskError(
        "No model deployment serves this app (or every one is disabled): an operator assigns "
        "one in the admin.",
        code="provider_not_initialize",
    )


def serving_provider(endpoint: Endpoint) -> Provider:
    return endpoint_provider(endpoint)


def larger_window(task: Task, endpoint: Endpoint) -> int:
    """The largest context window among the task's other deployments (0: none is larger)."""
    route = app_route(app_id=task.app_id) if task.app_id else AppRoute((), ())
    windows = [e.context_window for e in route.all if e.context_window > endpoint.context_window]
    return max(windows, default=0)
