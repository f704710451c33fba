"""Request ids: taken from `X-Request-Id` when the client (or a proxy) sent one, made up otherwise."""

import re
import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from apps.core.context import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _request_id(request: HttpRequest) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Sets the request id for logs and echoes it in the response. Works for sync and async views."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], object]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> object:
        if iscoroutinefunction(self):
            return self._acall(request)
        request_id = _request_id(request)
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        assert isinstance(response, HttpResponseBase)
        response["X-Request-Id"] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        request_id = _request_id(request)
        token = request_id_var.set(request_id)
        try:
            get_response = self.get_response
            response = await get_response(request)  # type: ignore[misc]
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = request_id
        return response


AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]
