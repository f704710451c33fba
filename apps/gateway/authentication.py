"""App-key authentication: `Authorization: Bearer app-...` identifies one app; a chat page's
end-user session (apps.gateway.sessions) identifies its app and its end user."""

from urllib.parse import urlsplit

from django.http import HttpRequest

from apps.applications.models import ApiKey
from apps.applications.selectors import api_key_get_active_async
from apps.applications.services import api_key_use_due, api_key_used
from apps.core.background import in_background
from apps.core.db import db_sync_to_async
from apps.core.errors import Forbidden, Unauthorized
from apps.gateway.budgets import caller_checked
from apps.gateway.sessions import APP_CODE_HEADER, SESSION_ROUTES, web_caller_async

_api_key_used = db_sync_to_async(api_key_used)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("Authorization header must be provided and start with 'Bearer'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization scheme must be 'Bearer'")
    return token.strip()


def _usable(api_key: ApiKey | None) -> ApiKey:
    if api_key is None:
        raise Unauthorized("Access token is invalid")
    if not api_key.app.enabled:
        raise Forbidden("The app is disabled.")
    caller_checked()
    return api_key


async def api_key_from_header_async(authorization: str | None) -> ApiKey:
    """The active key named by an Authorization header; raises Unauthorized or Forbidden."""
    api_key = _usable(await api_key_get_active_async(clear_key=bearer_token(authorization)))
    if api_key_use_due(api_key):
        in_background(_api_key_used(api_key.id))  # the request need not wait for the stamp
    return api_key


async def api_key_from_request_async(request: HttpRequest) -> ApiKey:
    """The caller's key: an app key in Authorization, or the web-session key of a chat page's
    end-user session (apps.gateway.sessions), which also fixes the request's end user."""
    authorization = request.headers.get("Authorization")
    if authorization is None and APP_CODE_HEADER in request.headers:
        _session_route_check(request)
        api_key, end_user = await web_caller_async(_web_code(request), request.COOKIES)
        caller_checked()
        _as_end_user(request, end_user)
        return api_key
    return await api_key_from_header_async(authorization)


def _session_route_check(request: HttpRequest) -> None:
    match = getattr(request, "resolver_match", None)
    if match is None or match.url_name not in SESSION_ROUTES:
        raise Unauthorized(
            "This route takes the app's API key: a chat session calls its end user's own "
            "routes only."
        )


def _web_code(request: HttpRequest) -> str | None:
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(origin, request.get_host()):
        raise Forbidden("Chat sessions are used from their own page only.")
    return request.headers.get(APP_CODE_HEADER)


def same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin.strip().lower())
    return parts.scheme in ("http", "https") and parts.netloc == host.lower()


def _as_end_user(request: HttpRequest, end_user: str) -> None:
    """The session's end user replaces any `user` the page sent (query string and JSON body)."""
    request.web_end_user = end_user  # type: ignore[attr-defined]  # read by json_body
    query = request.GET.copy()
    query["user"] = end_user
    request.GET = query  # type: ignore[assignment]  # mutable: the end user was set
