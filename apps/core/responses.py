"""JSON responses in the platform's shapes, for views that do not go through DRF."""

from typing import Any

from django.http import JsonResponse

from apps.core.errors import ApiError


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.envelope(), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def json_response(body: dict[str, Any], status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})
