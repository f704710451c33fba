"""Request ids: taken from `X-Request-Id` when a client or proxy sent one, made up otherwise."""

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from apps.core.context import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _request_id(request: HttpRequest) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


@sync_and_async_middleware
def request_id_middleware(
    get_response: Callable[[HttpRequest], Any],
) -> Callable[[HttpRequest], Any]:
    """Sets the request id for every log line of the request and echoes it in the response."""
    if iscoroutinefunction(get_response):
        async_get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = get_response

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            request_id = _request_id(request)
            token = request_id_var.set(request_id)
            try:
                response = await async_get_response(request)
            finally:
                request_id_var.reset(token)
            response["X-Request-Id"] = request_id
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        request_id = _request_id(request)
        token = request_id_var.set(request_id)
        try:
            response: HttpResponseBase = get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = request_id
        return response

    return middleware
