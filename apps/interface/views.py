"""The shapes every async API view shares: one method per view, no CSRF (keys, not cookies), and
every error answered in the envelope of the API the route speaks (`dify_view`, `openai_view`).

Async views are dispatched by the API edge middleware past Django's middleware chain
(apps.gateway.middleware): nothing of a request runs in a thread unless it touches the database.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from apps.api.dialects import Dialect, dialect_declare
from apps.api.negotiation import DOCUMENT_TYPES, JSON, error_document, preferred, response_type
from apps.core.errors import MethodNotAllowed
from apps.core.exception_handler import to_api_error
from apps.openai.errors import openai_error_response

# django-stubs types `path()` for sync views only; async views are declared loosely to fit it.
AsyncView = Callable[..., Any]


def _method_check(request: HttpRequest, method: str) -> None:
    if request.method != method:
        raise MethodNotAllowed(f'Method "{request.method}" not allowed.')


def dify_view(method: str, *, sends_bytes: bool = False) -> Callable[[AsyncView], AsyncView]:
    """A view of Dify's API answering `method`; it is called with the media type negotiated
    from Accept (JSON, or XML on request) after the request, and its errors are in Dify's
    envelope in that type. A route that `sends_bytes` of their own type (a file) refuses no
    Accept: its errors are JSON, or XML if the client prefers that."""

    def decorate(view: AsyncView) -> AsyncView:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            media = JSON
            try:
                if sends_bytes:
                    media = preferred(request.headers.get("Accept"), DOCUMENT_TYPES) or JSON
                else:
                    media = response_type(request)
                _method_check(request, method)
                return await view(request, media, *args, **kwargs)
            except Exception as exc:
                error = to_api_error(exc)
                response = error_document(error, media)
                if error.status == 401:
                    response["WWW-Authenticate"] = 'Bearer realm="api"'
                return response

        dialect_declare(wrapper, Dialect.DIFY)
        return wrapper

    return decorate


def openai_view(method: str) -> Callable[[AsyncView], AsyncView]:
    """A view of OpenAI's API answering `method`: JSON, errors in OpenAI's envelope."""

    def decorate(view: AsyncView) -> AsyncView:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                _method_check(request, method)
                return await view(request, *args, **kwargs)
            except Exception as exc:
                return openai_error_response(to_api_error(exc))

        dialect_declare(wrapper, Dialect.OPENAI)
        return wrapper

    return decorate


def openai_methods(**views: AsyncView) -> AsyncView:
    """One route of OpenAI's API answering several methods, each with its own view (e.g. GET
    and POST /v1/files); any other method is refused in OpenAI's envelope."""

    @csrf_exempt
    async def route(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        view = views.get(str(request.method))
        if view is None:
            allowed = ", ".join(views)
            error = MethodNotAllowed(f'Method "{request.method}" not allowed (only {allowed}).')
            return openai_error_response(error)
        response: HttpResponseBase = await view(request, *args, **kwargs)
        return response

    dialect_declare(route, Dialect.OPENAI)
    return route
