"""Probes for load balancers and Kubernetes."""

from django.db import connection
from django.http import HttpRequest, JsonResponse
from rq import Worker

from apps.core.redis import sync_client
from apps.operations.recent import Recent


async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and its event loop answers."""
    return JsonResponse({"status": "ok"})


def _readiness() -> tuple[dict[str, str], bool]:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["postgresql"] = "ok"
    except Exception as exc:
        checks["postgresql"] = f"error: {type(exc).__name__}"
    try:
        client = sync_client()
        client.ping()
        checks["redis"] = "ok"
        workers = Worker.count(connection=client)
        checks["workers"] = f"{workers} running" if workers else "none running"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
        workers = 0
    ready = checks["postgresql"] == "ok" and checks["redis"] == "ok" and workers > 0
    return checks, ready


_recent_readiness = Recent(_readiness)


async def readyz(request: HttpRequest) -> JsonResponse:
    """PostgreSQL and Redis answer and at least one worker is registered (checked at most once
    per OPERATIONS_FIGURES_CACHE_S in this process)."""
    checks, ready = await _recent_readiness.get_async()
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
