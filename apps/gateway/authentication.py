"""App-key authentication: `Authorization: Bearer app-...` identifies one app."""

from typing import Any

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.applications.models import ApiKey
from apps.applications.selectors import api_key_get_active, api_key_get_active_async
from apps.applications.services import api_key_use_due, api_key_used
from apps.core.background import in_background
from apps.core.db import db_sync_to_async
from apps.core.errors import Forbidden, Unauthorized

_api_key_used = db_sync_to_async(api_key_used)


def _bearer_token(authorization: str | None) -> str:
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
    return api_key


def api_key_from_header(authorization: str | None) -> ApiKey:
    """The active key named by an Authorization header; raises Unauthorized or Forbidden."""
    api_key = _usable(api_key_get_active(clear_key=_bearer_token(authorization)))
    if api_key_use_due(api_key):
        api_key_used(api_key.id)
    return api_key


async def api_key_from_header_async(authorization: str | None) -> ApiKey:
    api_key = _usable(await api_key_get_active_async(clear_key=_bearer_token(authorization)))
    if api_key_use_due(api_key):
        in_background(_api_key_used(api_key.id))  # the request need not wait for the stamp
    return api_key


def api_key_from_request(request: HttpRequest) -> ApiKey:
    return api_key_from_header(request.headers.get("Authorization"))


async def api_key_from_request_async(request: HttpRequest) -> ApiKey:
    return await api_key_from_header_async(request.headers.get("Authorization"))


class AppKeyAuthentication(BaseAuthentication):
    """DRF authentication: sets `request.auth` to the ApiKey (and `request.user` to its app)."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey]:
        api_key = api_key_from_request(request._request)
        return api_key.app, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class HasAppKey(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey)
