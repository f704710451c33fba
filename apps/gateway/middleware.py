"""The API's edge, before authentication, parsing or any database work:
- the budget of the client's address for requests that name no caller, and for those whose
  credential does not check out (apps.gateway.budgets): 429 with Retry-After, so a flood costs
  one Redis call per request, and none once this process knows the budget is empty;
- a URL that carries a NUL character (which no id or parameter can contain, and PostgreSQL cannot
  store): 400.
Valid callers spend the platform's ceiling with their own budgets, once authenticated
(apps.gateway.admission.rate_limit).

It also dispatches the async API views (and the probes) itself, past the rest of the chain: those
middlewares (sessions, CSRF, auth, messages, security headers) are for the admin and the pages,
and each of Django's runs its hooks in a thread hop under ASGI, two per middleware, so the chain
cost an answer request several milliseconds. API callers use keys, not cookies, and the API views
are CSRF-exempt; the security headers the chain would add are set here."""

from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, ResolverMatch, get_resolver
from django.utils.decorators import async_only_middleware

from apps.api.negotiation import JSON, NotAcceptable, error_document, response_type
from apps.applications.selectors import api_key_known_active
from apps.core.errors import ApiError, InvalidParam
from apps.gateway.authentication import bearer_token
from apps.gateway.budgets import EdgeCharge, charge_close, charge_open
from apps.gateway.ratelimit import (
    Bucket,
    Verdict,
    anonymous_bucket,
    known_refusal,
    refusal,
    take_async,
)
from apps.gateway.refusals import refusal_count
from apps.gateway.sessions import APP_CODE_HEADER
from apps.openai.errors import openai_error_response, speaks_openai

# The API; probes, metrics, the admin and the API's own documentation stay reachable.
API_PREFIXES = ("/v1/", "/api/v1/")
# Liveness and readiness: not limited (a probe must always get in), but dispatched past the
# middleware chain like the API, which they need nothing of (load balancers call them often).
PROBE_PATHS = frozenset({"/healthz", "/readyz"})


def _limited(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def _names_a_caller(request: HttpRequest) -> bool:
    headers = request.headers
    return "Authorization" in headers or APP_CODE_HEADER in headers


def _address_bucket(request: HttpRequest) -> Bucket | None:
    return anonymous_bucket(request.META.get("REMOTE_ADDR") or "unknown")


def _known_valid(request: HttpRequest) -> bool:
    """The request's key is one this process knows to be active (no lookup): a client behind
    the address of a wrong keys' flood is still served."""
    try:
        clear_key = bearer_token(request.headers.get("Authorization"))
    except ApiError:
        return False
    return api_key_known_active(clear_key=clear_key)


def _refused_before(request: HttpRequest, bucket: Bucket | None) -> Verdict | None:
    """A request naming a caller, from an address whose budget this process knows is empty,
    is refused without authentication (no database work) unless its key is known valid."""
    if bucket is None or _known_valid(request):
        return None
    return known_refusal([bucket])


def _unchecked(request: HttpRequest, charge: EdgeCharge, bucket: Bucket | None) -> bool:
    return bucket is not None and _names_a_caller(request) and not charge.caller_checked


def _malformed(request: HttpRequest) -> ApiError | None:
    query = request.META.get("QUERY_STRING", "")
    if "\x00" in request.path or "%00" in query:
        return InvalidParam("The URL contains a NUL character.")
    if "%" in query and not _utf8(unquote_to_bytes(query)):
        # Django would decode it with replacement characters: `user=bob%ED%A0%80` would quietly
        # become another end user instead of being refused.
        return InvalidParam("The query string is not valid UTF-8 (or has an unpaired surrogate).")
    return None


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")  # strict: refuses encoded surrogates too
    except UnicodeDecodeError:
        return False
    return True


# What django.middleware.security and clickjacking add with our settings.
API_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _async_view(request: HttpRequest) -> ResolverMatch | None:
    try:
        match = get_resolver().resolve(request.path_info)
    except Resolver404:
        return None
    return match if iscoroutinefunction(match.func) else None


async def _dispatched(request: HttpRequest, match: ResolverMatch) -> HttpResponseBase:
    request.resolver_match = match
    response: HttpResponseBase = await match.func(request, *match.args, **match.kwargs)
    for header, value in API_HEADERS.items():
        response.headers.setdefault(header, value)
    return response


def _refused(request: HttpRequest, error: ApiError) -> HttpResponseBase:
    if speaks_openai(request.path):
        return openai_error_response(error)
    try:
        media = response_type(request)
    except NotAcceptable:
        media = JSON
    return error_document(error, media)


def _refusal_response(request: HttpRequest, verdict: Verdict) -> HttpResponseBase:
    assert verdict.bucket is not None
    refusal_count(verdict.bucket.reason)
    return _refused(request, refusal(verdict))


@async_only_middleware
def api_edge_middleware(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], Awaitable[HttpResponseBase]]:
    """Async only: under daphne the chain is async, and Django adapts it for a synchronous
    caller (the test client), so the edge's rules are written once."""

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        if not _limited(request):
            if request.path in PROBE_PATHS and (match := _async_view(request)) is not None:
                return await _dispatched(request, match)
            return await get_response(request)
        bucket = _address_bucket(request)
        if not _names_a_caller(request):
            if bucket is not None and not (verdict := await take_async([bucket])).allowed:
                return _refusal_response(request, verdict)
        elif (verdict_now := _refused_before(request, bucket)) is not None:
            return _refusal_response(request, verdict_now)
        malformed = _malformed(request)
        if malformed is not None:
            return _refused(request, malformed)
        charge, token = charge_open()
        try:
            match = _async_view(request)
            if match is not None:
                response = await _dispatched(request, match)
            else:
                response = await get_response(request)
        finally:
            charge_close(token)
        if _unchecked(request, charge, bucket):
            assert bucket is not None
            if not (spent := await take_async([bucket])).allowed:
                return _refusal_response(request, spent)
        return response

    return middleware
