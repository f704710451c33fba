"""The shape every async /v1 view shares: one method, no CSRF (keys, not cookies), the response
type negotiated from Accept (JSON, or XML on request), errors in the envelope in that type.

Async views are dispatched by the API edge middleware past Django's middleware chain
(apps.gateway.middleware): nothing of a request runs in a thread unless it touches the database.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from apps.core.errors import MethodNotAllowed
from apps.core.exception_handler import to_api_error
from apps.gateway.negotiation import (
    DOCUMENT_TYPES,
    JSON,
    error_document,
    preferred,
    response_type,
)

# django-stubs types `path()` for sync views only; async views are declared loosely to fit it.
AsyncView = Callable[..., Any]


def api_view(method: str, *, sends_bytes: bool = False) -> Callable[[AsyncView], AsyncView]:
    """An async API view answering `method`; it is called with the negotiated media type after
    the request. A route that `sends_bytes` of their own type (a file) refuses no Accept: its
    errors are JSON, or XML if the client prefers that."""

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
                if request.method != method:
                    raise MethodNotAllowed(f'Method "{request.method}" not allowed.')
                return await view(request, media, *args, **kwargs)
            except Exception as exc:
                error = to_api_error(exc)
                response = error_document(error, media)
                if error.status == 401:
                    response["WWW-Authenticate"] = 'Bearer realm="api"'
                return response

        return wrapper

    return decorate
