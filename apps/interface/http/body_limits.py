"""How large a request body may be, by route, and the answer to a larger one.

The JSON routes (and the admin's and pages' forms) take MAX_REQUEST_BYTES; Dify's upload takes
FILE_UPLOAD_MAX_MB and OpenAI's batch files BATCH_MAX_FILE_MB, each with room for the multipart
form around the file. A larger body is refused while it arrives, never read whole first: by the
web server (apps.interface.http.web_server), and again by the ASGI handler
(apps.interface.http.handler) under any other server. What a body can cost is then its route's
limit.
"""

from django.conf import settings
from django.http import HttpResponse

from apps.api.negotiation import JSON, error_document
from apps.core.errors import ApiError, RequestTooLarge
from apps.files.errors import FileTooLarge
from apps.openai.errors import openai_error_response, speaks_openai

MB = 1024 * 1024
# Room for the multipart framing (and a `user` or `purpose` field) around an uploaded file.
FORM_OVERHEAD_BYTES = 64 * 1024
UPLOAD_PATH = "/v1/files/upload"
BATCH_FILES_PATH = "/v1/files"


def upload_max_bytes() -> int:
    return int(settings.FILE_UPLOAD_MAX_MB) * MB


def batch_file_max_bytes() -> int:
    return int(settings.BATCHES["MAX_FILE_MB"]) * MB


def body_limit(method: str, path: str) -> int:
    """The most bytes the body of a `method` request to `path` (decoded, no query) may have."""
    if method.upper() == "POST":
        if path == UPLOAD_PATH:
            return upload_max_bytes() + FORM_OVERHEAD_BYTES
        if path == BATCH_FILES_PATH:
            return batch_file_max_bytes() + FORM_OVERHEAD_BYTES
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def _error(method: str, path: str) -> ApiError:
    limit = body_limit(method, path)
    if limit == int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE):
        return RequestTooLarge(f"Request body exceeds {limit} bytes.")
    if path == UPLOAD_PATH:
        return FileTooLarge(
            f"The upload is larger than the platform's limit ({upload_max_bytes()} bytes)."
        )
    return FileTooLarge(f"A batch file may be at most {batch_file_max_bytes()} bytes.")


def body_refusal(method: str, path: str) -> HttpResponse:
    """The 413 for a body over the route's limit, in the route's dialect (Dify's or OpenAI's)."""
    error = _error(method, path)
    response = openai_error_response(error) if speaks_openai(path) else error_document(error, JSON)
    response["Connection"] = "close"
    return response
