"""Files sent with a question, checked against the app's settings when the question is recorded:
a file the app's model cannot take is refused with a clear 400, never dropped. What passes is
recorded with the message (MessageFile) for the worker that answers it."""

from typing import Any

from apps.applications.file_rules import LOCAL_FILE, FileRules
from apps.applications.models import App
from apps.conversations.models import MessageFile
from apps.core.errors import InvalidParam
from apps.core.file_formats import FileKind, format_for_mime, format_of
from apps.deployments.selectors import app_route
from apps.files.errors import FileNotFound, FileTooLarge
from apps.files.models import FilePurpose, StoredFile
from apps.files.remote import AddressPolicy, RemoteFileRefused, url_check
from apps.files.selectors import files_of


def attachments_resolve(
    *, app: App, end_user: str, files: list[dict[str, Any]]
) -> list[MessageFile]:
    """The files as unsaved MessageFile rows (positions set, message not), or the error that
    says which file the app cannot take and why. Uploads must be the end user's own: another
    user's upload is as unknown as a made-up id (404)."""
    if not files:
        return []
    rules = FileRules.of(app)
    if not rules.enabled:
        raise InvalidParam("This app takes no files: its file upload is turned off.")
    if len(files) > rules.number_limit:
        raise InvalidParam(f"files: this app takes at most {rules.number_limit} per request.")
    uploads = _uploads(app, end_user, files)
    policy = AddressPolicy.from_settings()
    return [
        _attachment(app, rules, policy, uploads, position, spec)
        for position, spec in enumerate(files)
    ]


def _uploads(app: App, end_user: str, files: list[dict[str, Any]]) -> dict[str, StoredFile]:
    ids = [spec["upload_file_id"] for spec in files if spec["transfer_method"] == LOCAL_FILE]
    if not ids:
        return {}
    rows = files_of(app_id=app.id, purpose=FilePurpose.UPLOAD, end_user=end_user).filter(id__in=ids)
    return {str(row.id): row for row in rows}


def _attachment(
    app: App,
    rules: FileRules,
    policy: AddressPolicy,
    uploads: dict[str, StoredFile],
    position: int,
    spec: dict[str, Any],
) -> MessageFile:
    label = f"files[{position}]"
    kind, method = spec["type"], spec["transfer_method"]
    if kind == FileKind.IMAGE and not (rules.vision and app_route(app_id=app.id).vision):
        raise InvalidParam(f"{label}: the app's model does not read images.")
    if kind not in rules.kinds:
        raise InvalidParam(
            f"{label}: this app takes {' and '.join(rules.kinds)} files, not {kind}."
        )
    if method not in rules.methods:
        raise InvalidParam(f"{label}: this app takes files as {' or '.join(rules.methods)} only.")
    if method == LOCAL_FILE:
        stored = uploads.get(str(spec["upload_file_id"]))
        if stored is None:
            raise FileNotFound(f"{label}: upload file {spec['upload_file_id']} does not exist.")
        _upload_check(rules, label, kind, stored)
        return MessageFile(position=position, kind=kind, transfer_method=method, stored_file=stored)
    try:
        url = url_check(spec["url"], policy)
    except RemoteFileRefused as refused:
        raise InvalidParam(f"{label}: {refused}.") from None
    fmt = format_of(url.split("?", 1)[0])
    if fmt is not None and (fmt.kind != kind or not rules.takes(fmt)):
        raise InvalidParam(f"{label}: this app does not take {fmt.extension} files as {kind}.")
    return MessageFile(position=position, kind=kind, transfer_method=method, url=url)


def _upload_check(rules: FileRules, label: str, kind: str, stored: StoredFile) -> None:
    fmt = format_of(stored.filename) or format_for_mime(stored.mime_type)
    if fmt is None or not rules.takes(fmt):
        raise InvalidParam(f"{label}: this app does not take {stored.filename}'s type any more.")
    if fmt.kind != kind:
        raise InvalidParam(f"{label}: {stored.filename} is {_a(fmt.kind)}, not {_a(kind)}.")
    if stored.size > rules.max_bytes(kind):
        raise FileTooLarge(
            f"{label}: {stored.filename} is larger than this app's limit for {kind}s "
            f"({rules.max_bytes(kind) // (1024 * 1024)} MB)."
        )


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"
