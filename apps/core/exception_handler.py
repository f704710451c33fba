"""DRF's exception handler, rewritten so that every error leaves in Dify's envelope."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from apps.core import errors

logger = logging.getLogger(__name__)


def _first_message(detail: Any) -> str:
    """Flatten DRF's nested validation detail into one readable sentence."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _first_message(value)
            # Messages that already name their argument (Dify's "Arg user must be provided.")
            # stand alone.
            if field == "non_field_errors" or inner.startswith("Arg "):
                return inner
            return f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def to_api_error(exc: Exception) -> errors.ApiError:
    """Map any exception raised while serving a request to the ApiError it answers with."""
    if isinstance(exc, errors.ApiError):
        return exc
    if isinstance(exc, exceptions.ParseError):
        return errors.InvalidJson()
    if isinstance(exc, exceptions.ValidationError):
        return errors.InvalidParam(_first_message(exc.detail))
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return errors.Unauthorized(str(exc.detail))
    if isinstance(exc, exceptions.PermissionDenied | PermissionDenied):
        return errors.Forbidden()
    if isinstance(exc, exceptions.NotFound | Http404):
        return errors.NotFound()
    if isinstance(exc, exceptions.MethodNotAllowed):
        return errors.MethodNotAllowed(str(exc.detail))
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return errors.UnsupportedMediaType()
    if isinstance(exc, exceptions.NotAcceptable):
        error = errors.ApiError(str(exc.detail))
        error.status, error.code = 406, "not_acceptable"
        return error
    if isinstance(exc, exceptions.Throttled):
        wait = getattr(exc, "wait", None) or 1
        return errors.RateLimitError(headers={"Retry-After": str(int(wait))})
    logger.exception("unhandled error while serving a request")
    return errors.InternalError()


def envelope_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    error = to_api_error(exc)
    headers = dict(error.headers)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
    return Response(error.envelope(), status=error.status, headers=headers)
