"""The checks a request passes before any work is recorded, cheapest first.

The global ceiling runs earlier still, in the API edge middleware. Then: body size (from the
header), the key (one indexed read), the key's and the end user's rate limits (one Redis call),
validation, and for answers load shedding. Each refusal is counted by reason in
`dp_requests_refused_total`.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from rest_framework import serializers

from apps.api.bodies import body_size_check, json_body
from apps.applications.models import ApiKey, App
from apps.core.errors import ApiError, Overloaded, TooManyRequests
from apps.dify.requests import validated
from apps.gateway.authentication import api_key_from_request_async
from apps.gateway.caps import Lease, lease_acquire
from apps.gateway.ratelimit import refusal, request_buckets, take_async
from apps.gateway.refusals import refusal_count
from apps.gateway.shedding import shed_check

Checked = TypeVar("Checked")

_shed_check = sync_to_async(shed_check, thread_sensitive=False)


async def authenticated(request: HttpRequest) -> ApiKey:
    body_size_check(request)
    return await api_key_from_request_async(request)


async def rate_limit(api_key: ApiKey, end_user: str | None) -> None:
    verdict = await take_async(request_buckets(api_key, end_user))
    if not verdict.allowed:
        assert verdict.bucket is not None
        refusal_count(verdict.bucket.reason)
        raise refusal(verdict)


async def admitted(
    request: HttpRequest, serializer: type[serializers.Serializer]
) -> tuple[ApiKey, dict[str, Any], dict[str, Any]]:
    """The key, the JSON body and its validated data, once the key and user are within their
    rates. A body that does not parse still costs the key a token: garbage floods are limited."""
    return await admitted_with(request, lambda body: validated(serializer, body))


async def admitted_with(
    request: HttpRequest, validate: Callable[[dict[str, Any]], Checked]
) -> tuple[ApiKey, dict[str, Any], Checked]:
    """As `admitted`, with the door's own validation (another API's shapes)."""
    api_key = await authenticated(request)
    body: dict[str, Any] = {}
    problem: ApiError | None = None
    try:
        body = json_body(request)
    except ApiError as error:
        problem = error
    user = body.get("user")
    await rate_limit(api_key, user if isinstance(user, str) else None)
    if problem is not None:
        raise problem
    return api_key, body, validate(body)


async def admitted_query(
    request: HttpRequest, serializer: type[serializers.Serializer]
) -> tuple[ApiKey, dict[str, Any]]:
    """As `admitted`, for a GET: the end user and the arguments come from the query string."""
    api_key = await authenticated(request)
    await rate_limit(api_key, request.GET.get("user") or None)
    return api_key, validated(serializer, request.GET.dict())


async def shed(api_key: ApiKey, priority: str | None, deadline_ms: int | None) -> None:
    """Refuse the request if its answer could not start within its budget (apps.gateway.
    shedding), at the priority it would run at."""
    granted = api_key.priority_grant(priority).granted
    try:
        await _shed_check(priority=granted, deadline_ms=deadline_ms, app_id=api_key.app_id)
    except Overloaded:
        refusal_count(f"shed_{granted}")
        raise


async def cap_lease(app: App) -> Lease | None:
    """A lease under the app's cap on answers at once (apps.gateway.caps), counted as a refusal
    when the cap is full."""
    try:
        return await lease_acquire(app)
    except TooManyRequests:
        refusal_count("cap")
        raise
