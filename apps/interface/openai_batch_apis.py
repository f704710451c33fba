"""OpenAI's Files and Batch APIs, on the app's key: `POST /v1/files` (purpose=batch, JSONL),
`GET /v1/files[/{id}[/content]]`, `DELETE /v1/files/{id}`; `POST /v1/batches`,
`GET /v1/batches[/{id}]`, `POST /v1/batches/{id}/cancel`.

A batch's requests are the app's bulk work (apps.batches): recorded as messages and tasks of the
app, run at `low` in capacity live work does not need, within the batch's window.
"""

from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header

from apps.api.bodies import body_size_check, json_body
from apps.applications.models import ApiKey, App
from apps.batches.ids import BATCH_PREFIX, FILE_PREFIX, public_id, row_id
from apps.batches.models import Batch
from apps.batches.selectors import (
    PURPOSES,
    batch_file_get,
    batch_files_page,
    batch_get,
    batches_page,
    openai_purpose,
)
from apps.batches.services import batch_cancel, batch_create, batch_file_store
from apps.core.db import db_sync_to_async
from apps.core.responses import json_response
from apps.deployments.selectors import app_route, app_route_async
from apps.files.errors import FileTooLarge, NoFileUploaded, TooManyFiles
from apps.files.models import StoredFile
from apps.files.services import file_chunks_async, file_delete
from apps.gateway.admission import rate_limit
from apps.gateway.authentication import api_key_from_request_async
from apps.interface.forms import multipart_form
from apps.interface.http.body_limits import FORM_OVERHEAD_BYTES
from apps.interface.views import openai_methods, openai_view
from apps.openai.requests import OpenAIParamError

MAX_LIMIT = 100


def _timestamp(value: Any) -> int | None:
    return int(value.timestamp()) if value is not None else None


def file_object(file: StoredFile) -> dict[str, Any]:
    return {
        "id": public_id(FILE_PREFIX, file.id),
        "object": "file",
        "bytes": file.size,
        "created_at": _timestamp(file.created_at),
        "expires_at": _timestamp(file.expires_at),
        "filename": file.filename,
        "purpose": openai_purpose(file),
        "status": "processed",
        "status_details": None,
    }


def batch_object(batch: Batch, model: str) -> dict[str, Any]:
    def file_id(file_pk: Any) -> str | None:
        return public_id(FILE_PREFIX, file_pk) if file_pk is not None else None

    errors = {"object": "list", "data": batch.errors} if batch.errors else None
    return {
        "id": public_id(BATCH_PREFIX, batch.id),
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": model,
        "errors": errors,
        "input_file_id": file_id(batch.input_file_id),
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": file_id(batch.output_file_id),
        "error_file_id": file_id(batch.error_file_id),
        "created_at": _timestamp(batch.created_at),
        "in_progress_at": _timestamp(batch.in_progress_at),
        "expires_at": _timestamp(batch.expires_at),
        "finalizing_at": _timestamp(batch.finalizing_at),
        "completed_at": _timestamp(batch.completed_at),
        "failed_at": _timestamp(batch.failed_at),
        "expired_at": _timestamp(batch.expired_at),
        "cancelling_at": _timestamp(batch.cancelling_at),
        "cancelled_at": _timestamp(batch.cancelled_at),
        "request_counts": {
            "total": batch.request_total,
            "completed": batch.request_completed,
            "failed": batch.request_failed,
        },
        "metadata": batch.metadata or None,
    }


def _page(rows: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": rows,
        "first_id": rows[0]["id"] if rows else None,
        "last_id": rows[-1]["id"] if rows else None,
        "has_more": has_more,
    }


def _limit(request: HttpRequest, default: int) -> int:
    raw = request.GET.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise OpenAIParamError(
            f"limit must be an integer from 1 to {MAX_LIMIT}.", param="limit", code="invalid_value"
        )
    return limit


async def _app_key(request: HttpRequest) -> ApiKey:
    """The app's key: batches and their files are the app's own, so a chat page's end-user
    session (which acts for one end user, apps.gateway.sessions.SESSION_ROUTES) is refused."""
    api_key = await api_key_from_request_async(request)
    await rate_limit(api_key, None)
    return api_key


async def _caller(request: HttpRequest) -> ApiKey:
    body_size_check(request)
    return await _app_key(request)


# --- files ------------------------------------------------------------------------------------


def _max_file_bytes() -> int:
    return int(settings.BATCHES["MAX_FILE_MB"]) * 1024 * 1024


def _upload(files: Any) -> UploadedFile:
    every = [upload for name in files for upload in files.getlist(name)]
    if len(every) > 1:
        raise TooManyFiles()
    if not every or "file" not in files:
        raise NoFileUploaded("Send the file as multipart/form-data, in a part named `file`.")
    return every[0]


def _stored(app: App, upload: UploadedFile) -> StoredFile:
    try:
        name = upload.name or ""
        if not name.lower().endswith(".jsonl"):
            raise OpenAIParamError(
                "A batch file must be JSONL, named *.jsonl.", param="file", code="invalid_file"
            )
        return batch_file_store(
            app=app,
            filename=name,
            chunks=upload.chunks(settings.FILE_STORAGE_CHUNK_BYTES),
            size_hint=upload.size or 0,
        )
    finally:
        upload.close()  # a temporary file goes now, not when the request is collected


@openai_view("POST")
async def file_create(request: HttpRequest) -> HttpResponseBase:
    # Not `_caller`: its body limit is the JSON routes'; batch files have their own.
    api_key = await _app_key(request)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > _max_file_bytes() + FORM_OVERHEAD_BYTES:
        raise FileTooLarge(f"A batch file may be at most {_max_file_bytes()} bytes.")
    form, files = await multipart_form(request)
    purpose = form.get("purpose")
    if purpose != "batch":
        raise OpenAIParamError(
            "purpose must be batch: the files this platform takes are batch input.",
            param="purpose",
            code="invalid_value",
        )
    stored = await db_sync_to_async(_stored)(api_key.app, _upload(files))
    return json_response(file_object(stored))


@openai_view("GET")
async def file_list(request: HttpRequest) -> HttpResponseBase:
    api_key = await _caller(request)
    purpose = request.GET.get("purpose") or None
    if purpose is not None and purpose not in PURPOSES:
        raise OpenAIParamError(
            "purpose must be batch or batch_output.", param="purpose", code="invalid_value"
        )
    order = request.GET.get("order", "desc")
    if order not in ("asc", "desc"):
        raise OpenAIParamError("order must be asc or desc.", param="order", code="invalid_value")
    page = await db_sync_to_async(batch_files_page)(
        app_id=api_key.app_id,
        purpose=purpose,
        after=request.GET.get("after") or None,
        limit=_limit(request, 100),
        newest_first=order == "desc",
    )
    return json_response(_page([file_object(file) for file in page.rows], page.has_more))


async def _file_of(request: HttpRequest, file_id: str) -> tuple[ApiKey, StoredFile]:
    api_key = await _caller(request)
    file = await db_sync_to_async(batch_file_get)(app_id=api_key.app_id, file_id=file_id)
    return api_key, file


@openai_view("GET")
async def file_retrieve(request: HttpRequest, file_id: str) -> HttpResponseBase:
    _, file = await _file_of(request, file_id)
    return json_response(file_object(file))


@openai_view("DELETE")
async def file_remove(request: HttpRequest, file_id: str) -> HttpResponseBase:
    _, file = await _file_of(request, file_id)
    await db_sync_to_async(file_delete)(file=file)
    return json_response({"id": public_id(FILE_PREFIX, file.id), "object": "file", "deleted": True})


@openai_view("GET")
async def file_content(request: HttpRequest, file_id: str) -> HttpResponseBase:
    _, file = await _file_of(request, file_id)
    response = StreamingHttpResponse(file_chunks_async(file), content_type=file.mime_type)
    response["Content-Length"] = str(file.size)
    disposition = content_disposition_header(True, file.filename)
    if disposition is not None:
        response["Content-Disposition"] = disposition
    return response


files = openai_methods(GET=file_list, POST=file_create)
file = openai_methods(GET=file_retrieve, DELETE=file_remove)


# --- batches ----------------------------------------------------------------------------------


def _created(app: App, body: dict[str, Any]) -> dict[str, Any]:
    input_file = body.get("input_file_id")
    found = row_id(FILE_PREFIX, input_file) if isinstance(input_file, str) else None
    batch = batch_create(
        app=app,
        input_file_id=found,
        endpoint=body.get("endpoint"),
        completion_window=body.get("completion_window"),
        metadata=body.get("metadata"),
    )
    return batch_object(batch, app_route(app_id=batch.app_id).model_name)


@openai_view("POST")
async def batch_create_view(request: HttpRequest) -> HttpResponseBase:
    api_key = await _caller(request)
    body = json_body(request)
    return json_response(await db_sync_to_async(_created)(api_key.app, body))


@openai_view("GET")
async def batch_list(request: HttpRequest) -> HttpResponseBase:
    api_key = await _caller(request)
    page = await db_sync_to_async(batches_page)(
        app_id=api_key.app_id,
        after=request.GET.get("after") or None,
        limit=_limit(request, 20),
    )
    model = (await app_route_async(app_id=api_key.app_id)).model_name
    return json_response(_page([batch_object(batch, model) for batch in page.rows], page.has_more))


@openai_view("GET")
async def batch_retrieve(request: HttpRequest, batch_id: str) -> HttpResponseBase:
    api_key = await _caller(request)
    batch = await db_sync_to_async(batch_get)(app_id=api_key.app_id, batch_id=batch_id)
    model = (await app_route_async(app_id=api_key.app_id)).model_name
    return json_response(batch_object(batch, model))


def _cancelled(app_id: Any, batch_id: str) -> dict[str, Any]:
    batch = batch_cancel(batch=batch_get(app_id=app_id, batch_id=batch_id))
    return batch_object(batch, app_route(app_id=app_id).model_name)


@openai_view("POST")
async def batch_cancel_view(request: HttpRequest, batch_id: str) -> HttpResponseBase:
    api_key = await _caller(request)
    return json_response(await db_sync_to_async(_cancelled)(api_key.app_id, batch_id))


batches = openai_methods(GET=batch_list, POST=batch_create_view)
