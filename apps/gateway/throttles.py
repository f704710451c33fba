"""Per-key and per-user rate limits on the DRF routes (conversations, messages, app info), with
the same buckets as the answer routes: one budget per key and per end user across all routes."""

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.applications.models import ApiKey
from apps.core.errors import ApiError
from apps.gateway.ratelimit import refusal, request_buckets, take
from apps.gateway.refusals import refusal_count
from apps.gateway.requests import json_body


def _end_user(request: Request) -> str | None:
    """`user` as the route takes it (query string on GET, JSON body otherwise), if present."""
    if request.method == "GET":
        user: Any = request.query_params.get("user")
    else:
        try:
            user = json_body(request._request).get("user")
        except ApiError:
            return None  # the view reports what is wrong with the body
    return user if isinstance(user, str) and user else None


class KeyAndUserRateThrottle(BaseThrottle):
    """Refuses with the envelope's 429 `rate_limit_error` (and Retry-After) itself, so the client
    learns which limit it hit."""

    def allow_request(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        buckets = request_buckets(api_key, _end_user(request))
        verdict = take(buckets)
        if not verdict.allowed:
            assert verdict.bucket is not None
            refusal_count(verdict.bucket.reason)
            raise refusal(verdict)
        return True
