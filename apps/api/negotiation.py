"""Content negotiation for the API routes: JSON by default, XML on request, Server-Sent Events for
streams, and a clear 406 when the client accepts nothing we can send."""

from collections.abc import AsyncIterator, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from apps.api.renderers import xml_bytes
from apps.core.errors import ApiError
from apps.core.responses import error_response, json_response

JSON = "application/json"
XML = "application/xml"
TEXT_XML = "text/xml"
EVENT_STREAM = "text/event-stream"
# What an answer route can send; errors and blocking answers are JSON or XML.
ANSWER_TYPES = (JSON, XML, TEXT_XML, EVENT_STREAM)
DOCUMENT_TYPES = (JSON, XML, TEXT_XML)


class NotAcceptable(ApiError):
    status = 406
    code = "not_acceptable"
    default_message = "Accept allows none of the types this route sends."


def _ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = max(0.0, min(1.0, float(value)))
                except ValueError:
                    quality = 0.0
        ranges.append((media.lower(), quality))
    return ranges


def _quality(media: str, ranges: list[tuple[str, float]]) -> float:
    """The quality the most specific matching range gives `media` (0: not acceptable)."""
    kind = media.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)
    for pattern, quality in ranges:
        if pattern == media:
            specificity = 2
        elif pattern == f"{kind}/*":
            specificity = 1
        elif pattern == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, quality)
    return best[1]


def preferred(accept: str | None, offered: Sequence[str]) -> str | None:
    """The offered type the client likes best (ties go to the earlier offer), None if none."""
    if not accept or not accept.strip():
        return offered[0]
    ranges = _ranges(accept)
    scored = [(_quality(media, ranges), -index, media) for index, media in enumerate(offered)]
    quality, _, media = max(scored)
    return media if quality > 0 else None


def response_type(request: HttpRequest) -> str:
    """The document type for this request's JSON-or-XML answers and errors.

    A client that accepts only the event stream still gets JSON errors (as Dify sends them); one
    that accepts nothing we send is refused with 406.
    """
    accept = request.headers.get("Accept")
    if preferred(accept, ANSWER_TYPES) is None:
        raise NotAcceptable(
            "Accept allows none of the types this route sends: "
            "application/json, application/xml, text/event-stream."
        )
    return preferred(accept, DOCUMENT_TYPES) or JSON


def document_response(body: dict[str, Any], media: str, status: int = 200) -> HttpResponse:
    if media in (XML, TEXT_XML):
        return HttpResponse(xml_bytes(body), status=status, content_type=f"{media}; charset=utf-8")
    return json_response(body, status=status)


def error_document(error: ApiError, media: str) -> HttpResponse:
    if media in (XML, TEXT_XML):
        response = document_response(error.envelope(), media, status=error.status)
        for name, value in error.headers.items():
            response[name] = value
        return response
    return error_response(error)


def event_stream_response(frames: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """Server-Sent Events, each frame passed on as soon as it is written."""
    response = StreamingHttpResponse(frames, content_type=EVENT_STREAM)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must pass each event on at once
    return response
