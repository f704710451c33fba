"""Reading a request's JSON body: its size from the header before it is read, its nesting
before it is parsed, and text PostgreSQL cannot store refused."""

import itertools
import json
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from apps.core.errors import InvalidJson, InvalidParam, RequestTooLarge, UnsupportedMediaType

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Possessive, and a lone trailing backslash allowed: no backtracking, so the scan stays linear.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def body_size_check(request: HttpRequest) -> None:
    """Refuse a body declared too large from its Content-Length alone, before reading it."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise _too_large()


def _too_large() -> RequestTooLarge:
    return RequestTooLarge(f"Request body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw`, counted without parsing it (so without
    recursion): strings are cut out (an unterminated one runs to the end, keeping the scan
    linear), then the brackets left are summed."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    opened = brackets.count(b"[") + brackets.count(b"{")
    if opened <= 1:
        return opened
    return max(0, max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0))


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object, or the envelope error that explains what is wrong with it."""
    # `curl -d` labels a JSON body as a form; like Dify we accept JSON under any content type,
    # but a body that really is a form gets told so.
    try:
        raw = request.body
    except RequestDataTooBig:
        raise _too_large() from None
    content_type = (request.content_type or "").lower()
    if not raw:
        raise InvalidJson()
    max_depth = settings.GATEWAY["MAX_JSON_DEPTH"]
    # Counting brackets is nearly free; only a body with more of them than the limit is scanned.
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(raw) > max_depth:
        raise InvalidParam(f"Request JSON nests deeper than {max_depth} levels.")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidJson("Request body is not valid UTF-8.") from None
    except (json.JSONDecodeError, RecursionError):
        if content_type in FORM_TYPES:
            raise UnsupportedMediaType(
                f"The request body is {content_type}, not JSON: send a JSON object "
                "(Content-Type: application/json)."
            ) from None
        raise InvalidJson() from None
    if not isinstance(data, dict):
        raise InvalidJson()
    json_bytes_text_check(raw, data)
    end_user = getattr(request, "web_end_user", None)
    if end_user is not None:
        data["user"] = end_user  # a chat session's end user is the session's, whatever was sent
    return data


# Text PostgreSQL cannot store: NUL, and UTF-16 surrogates (a lone one is not a character at
# all), whether written as a JSON escape or as raw bytes: Python's json decodes bytes with
# surrogates passed through, so `\xed\xa0\x80` in a body would otherwise arrive as one. Only
# bodies that contain a suspect sequence are walked.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
_SUSPECT_TEXT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|[\ud800-\udfff]")
BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def json_text_check(raw: str, data: Any) -> None:
    """For JSON decoded from text (a WebSocket frame): refuse NUL and lone surrogates."""
    if _SUSPECT_TEXT.search(raw):
        _text_check(data)


def json_bytes_text_check(raw: bytes, data: Any) -> None:
    """For JSON decoded from bytes (a request body, a batch line): refuse NUL and lone
    surrogates (InvalidJson)."""
    if _SUSPECT_ESCAPE.search(raw):
        _text_check(data)


def text_storable(value: str) -> bool:
    """Whether PostgreSQL can store the text (no NUL, no lone surrogate)."""
    return BAD_TEXT.search(value) is None


def _text_check(data: Any) -> None:
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and BAD_TEXT.search(value):
            raise InvalidJson(
                "Request body has text that is not valid UTF-8 (a NUL character or an unpaired "
                "surrogate escape)."
            )
