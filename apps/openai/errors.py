"""OpenAI's error envelope, `{"error": {"message", "type", "param", "code"}}`, for the routes that
speak OpenAI's API (and only those: the Dify routes keep Dify's envelope).

Every error of the platform maps onto it by status and code, so one pipeline raises the same
errors whichever door a request came in by, and each door answers in its own words.
"""

from typing import Any

from django.http import JsonResponse

from apps.api.dialects import Dialect, route_dialect
from apps.core.errors import ApiError, NotFound

# OpenAI's `code` for the platform's own, where OpenAI has a word for it.
CODES = {
    "unauthorized": "invalid_api_key",
    "rate_limit_error": "rate_limit_exceeded",
    "too_many_requests": "rate_limit_exceeded",
    "invalid_param": None,
    "internal_server_error": None,
}


class ModelNotFound(NotFound):
    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.")
        self.openai_code = "model_not_found"
        self.param = "model"


class StreamRestarted(ApiError):
    status = 500
    code = "stream_restarted"
    default_message = (
        "The answer was started again (a retry after a failure) after part of it was sent, and "
        "OpenAI's stream cannot take text back: send the request again."
    )


def speaks_openai(path: str) -> bool:
    """Whether the route at `path` is one of OpenAI's (its errors are in OpenAI's envelope)."""
    return route_dialect(path) == Dialect.OPENAI


def _type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def openai_error_body(error: ApiError) -> dict[str, Any]:
    code = getattr(error, "openai_code", None) or CODES.get(error.code, error.code)
    return {
        "error": {
            "message": error.message,
            "type": _type(error.status),
            "param": getattr(error, "param", None),
            "code": code,
        }
    }


def openai_error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(
        openai_error_body(error), status=error.status, json_dumps_params={"ensure_ascii": False}
    )
    for name, value in error.headers.items():
        response[name] = value
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
