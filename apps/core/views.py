"""Error pages for API clients: even a wrong URL answers in the envelope."""

from django.http import HttpRequest, JsonResponse

from apps.core.errors import InternalError, NotFound
from apps.core.responses import error_response


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(NotFound("The requested URL was not found on the server."))


def server_error(request: HttpRequest) -> JsonResponse:
    return error_response(InternalError())
