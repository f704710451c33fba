"""HTTP metrics and the access log: requests and time to the response's start, by route pattern
and status, and one JSON log line per request (with its request id, like every other line)."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from apps.core.logging import path_for_log
from apps.core.metrics import MetricsBatch

access_log = logging.getLogger("apps.http")

SKIPPED_ROUTES = frozenset({"metrics", "healthz", "readyz"})
# A label's values must come from a closed set: each distinct value is a field kept for good in
# the cluster's metrics (apps.core.metrics), and a client may send any method it likes.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(request: HttpRequest) -> str:
    method = str(request.method)
    return method if method in METHODS else "other"


def _route(request: HttpRequest) -> str:
    """The route's pattern (the URLconf's, so a closed set), never the path."""
    match = getattr(request, "resolver_match", None)
    return str(match.route) if match is not None and match.route else "unmatched"


def _record(request: HttpRequest, response: HttpResponseBase, elapsed: float) -> None:
    route = _route(request)
    access_log.info(
        "%s %s %s",
        request.method,
        path_for_log(request),
        response.status_code,
        extra={
            "route": route,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 1),
        },
    )
    if route in SKIPPED_ROUTES or route.startswith(("admin/", "static/")):
        return
    labels = {"route": route, "method": _method(request), "status": str(response.status_code)}
    metrics = MetricsBatch()
    metrics.inc("dp_http_requests_total", labels)
    metrics.observe("dp_http_request_duration_seconds", elapsed, {"route": route})
    metrics.send()


def _record_after_response(
    request: HttpRequest, response: HttpResponseBase, started: float
) -> None:
    """The response goes out first; its log line and metrics follow, on the loop (metrics are
    sums in memory, apps.core.metrics: no thread hop, no round trip)."""
    elapsed = time.monotonic() - started
    asyncio.get_running_loop().call_soon(_record, request, response, elapsed)


@sync_and_async_middleware
def http_metrics_middleware(
    get_response: Callable[[HttpRequest], Any],
) -> Callable[[HttpRequest], Any]:
    if iscoroutinefunction(get_response):
        async_get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = get_response

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            started = time.monotonic()
            response = await async_get_response(request)
            _record_after_response(request, response, started)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        started = time.monotonic()
        response: HttpResponseBase = get_response(request)
        _record(request, response, time.monotonic() - started)
        return response

    return middleware
