"""Dify's upload rules (POST /v1/files/upload): one file, of a kind and size the app takes,
whose content is what its name says; kept for the end user who sent it."""

from collections.abc import Iterable

from apps.applications.end_users import end_user_record
from apps.applications.file_rules import LOCAL_FILE, FileRules
from apps.applications.models import App
from apps.core.errors import InvalidParam
from apps.core.file_formats import content_matches, extension_of, format_of
from apps.files.errors import FilenameMissing, FileTooLarge, UnsupportedFileType
from apps.files.models import FilePurpose, StoredFile
from apps.files.services import file_store, upload_expiry


def upload_accept(
    *,
    app: App,
    end_user: str,
    filename: str,
    content_type: str,
    size: int,
    head: bytes,
    chunks: Iterable[bytes],
) -> StoredFile:
    """Check the upload against the app's settings and store it. `head` is the start of the
    content (apps.core.file_formats.HEAD_BYTES), `chunks` all of it."""
    if not filename:
        raise FilenameMissing()
    if "/" in filename or "\\" in filename:
        raise InvalidParam("The filename must not contain '/' or '\\'.")
    if not content_type:
        raise UnsupportedFileType("The file part declares no MIME type (Content-Type).")
    rules = FileRules.of(app)
    if not rules.enabled:
        raise UnsupportedFileType("This app takes no files: its file upload is turned off.")
    if LOCAL_FILE not in rules.methods:
        raise InvalidParam("This app takes files by URL only (remote_url), not uploads.")
    fmt = format_of(filename)
    if fmt is None or not rules.takes(fmt):
        extension = extension_of(filename) or "without an extension"
        raise UnsupportedFileType(
            f"File type not allowed ({extension}): this app takes {' '.join(rules.extensions)}."
        )
    limit = rules.max_bytes(fmt.kind)
    if size > limit:
        raise FileTooLarge(f"The file is {size} bytes; this app takes {fmt.kind}s up to {limit}.")
    if not content_matches(fmt, head):
        raise UnsupportedFileType(f"The file's content is not a {fmt.label}.")
    end_user_record(app_id=app.id, external_id=end_user)
    return file_store(
        app=app,
        end_user=end_user,
        purpose=FilePurpose.UPLOAD,
        filename=filename,
        mime_type=fmt.mime_type,
        chunks=chunks,
        max_bytes=limit,
        expires_at=upload_expiry(),
        size_hint=size,
    )
