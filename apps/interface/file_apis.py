"""Dify's file routes: POST /v1/files/upload (multipart: `file`, `user`) and
GET /v1/files/{file_id}/preview. Files are kept in the shared storage (apps.files), so any web
or worker process on any host reads them; each belongs to the end user who uploaded it.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import (
    DisallowedHost,
)
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponseBase, QueryDict, StreamingHttpResponse
from django.utils.datastructures import MultiValueDict
from django.utils.http import content_disposition_header

from apps.api.negotiation import document_response
from apps.applications.file_rules import MB
from apps.applications.models import App, EndUser
from apps.core.db import db_sync_to_async
from apps.core.errors import InvalidParam
from apps.core.file_formats import HEAD_BYTES
from apps.dify.requests import MAX_USER_CHARS
from apps.files.errors import FileTooLarge, NoFileUploaded, TooManyFiles
from apps.files.models import FilePurpose, StoredFile
from apps.files.selectors import file_get
from apps.files.services import file_chunks_async
from apps.files.uploads import upload_accept
from apps.gateway.admission import authenticated, rate_limit
from apps.gateway.authentication import api_key_from_request_async
from apps.interface.forms import multipart_form
from apps.interface.http.body_limits import FORM_OVERHEAD_BYTES
from apps.interface.views import dify_view

TRUE = frozenset({"true", "1", "yes"})
FALSE = frozenset({"false", "0", "no", ""})


def _declared_size_check(request: HttpRequest) -> None:
    """A body declared larger than any upload the platform takes is refused before parsing."""
    ceiling = int(settings.FILE_UPLOAD_MAX_MB) * MB
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > ceiling + FORM_OVERHEAD_BYTES:
        raise FileTooLarge(f"The upload is larger than the platform's limit ({ceiling} bytes).")


def _one_file(files: MultiValueDict[str, UploadedFile]) -> UploadedFile:
    every = [upload for name in files for upload in files.getlist(name)]
    if len(every) > 1:
        raise TooManyFiles()
    if not every or "file" not in files:
        raise NoFileUploaded()
    return every[0]


def _user(request: HttpRequest, form: QueryDict) -> str:
    user = str(getattr(request, "web_end_user", None) or form.get("user") or "")
    if len(user) > MAX_USER_CHARS:
        raise InvalidParam(f"user: must be at most {MAX_USER_CHARS} characters")
    if "\x00" in user:  # PostgreSQL cannot store it (a form's text has no surrogates left)
        raise InvalidParam("user: must not contain a NUL character")
    return user


def _stored(app: App, user: str, upload: UploadedFile) -> StoredFile:
    try:
        upload.seek(0)
        head = upload.read(HEAD_BYTES)
        upload.seek(0)
        return upload_accept(
            app=app,
            end_user=user,
            filename=upload.name or "",
            content_type=upload.content_type or "",
            size=upload.size or 0,
            head=head,
            chunks=upload.chunks(settings.FILE_STORAGE_CHUNK_BYTES),
        )
    finally:
        upload.close()  # a temporary file goes now, not when the request is collected


def _absolute(request: HttpRequest, path: str) -> str:
    try:
        return request.build_absolute_uri(path)
    except DisallowedHost:
        return path  # the request came for a host not in ALLOWED_HOSTS: no host to name


def upload_document(request: HttpRequest, stored: StoredFile) -> dict[str, Any]:
    """The upload as Dify describes it (FileUploadResponse)."""
    preview = _absolute(request, f"/v1/files/{stored.id}/preview")
    return {
        "id": str(stored.id),
        "name": stored.filename,
        "size": stored.size,
        "extension": stored.extension or None,
        "mime_type": stored.mime_type,
        "created_by": str(EndUser.id_for(stored.app_id, stored.end_user)),
        "created_at": int(stored.created_at.timestamp()),
        "preview_url": preview,
        # Dify signs this URL; here it is the preview route, read with the app's key.
        "source_url": preview,
        "original_url": None,
        "user_id": None,
        "tenant_id": None,
        "conversation_id": None,
        "file_key": None,
        "reference": None,
    }


@dify_view("POST")
async def file_upload(request: HttpRequest, media: str) -> HttpResponseBase:
    # Not `authenticated`: its body limit is the JSON routes'; uploads have their own.
    api_key = await api_key_from_request_async(request)
    _declared_size_check(request)
    form, files = await multipart_form(request)
    user = _user(request, form)
    await rate_limit(api_key, user or None)
    if not user:
        raise InvalidParam("Arg user must be provided.")
    upload = _one_file(files)
    stored = await db_sync_to_async(_stored)(api_key.app, user, upload)
    return document_response(upload_document(request, stored), media, status=201)


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise InvalidParam("as_attachment must be true or false.")


@dify_view("GET", sends_bytes=True)
async def file_preview(request: HttpRequest, media: str, file_id: str) -> HttpResponseBase:
    """The file's bytes, as its type: inline, or as a download with `as_attachment=true`."""
    api_key = await authenticated(request)
    user = request.GET.get("user", "")
    await rate_limit(api_key, user or None)
    if not user:
        raise InvalidParam("Arg user must be provided.")
    as_attachment = _flag(request.GET.get("as_attachment", ""))
    stored = await db_sync_to_async(file_get)(
        app_id=api_key.app_id, file_id=file_id, end_user=user, purpose=FilePurpose.UPLOAD
    )
    response = StreamingHttpResponse(file_chunks_async(stored), content_type=stored.mime_type)
    response["Content-Length"] = str(stored.size)
    disposition = content_disposition_header(as_attachment, stored.filename)
    if disposition is not None:
        response["Content-Disposition"] = disposition
    response["ETag"] = f'"{stored.sha256}"'
    response["Cache-Control"] = "private, max-age=3600"
    # Never run as a page, whatever a browser makes of it.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
