"""The files sent with a question, made ready for the model by the worker that answers it.

A file sent by URL is fetched here (never in a web process: apps.files.remote) and kept as a
stored file of the message, so a retry, the history and the preview see the bytes the model saw.
Images become image parts for a vision model; documents become text for the prompt (fitted to
the context window by apps.generation.prompts). A file the model cannot take fails the answer
with a clear error; none is ever left out silently.
"""

import base64
import uuid
from dataclasses import dataclass

from django.conf import settings

from apps.applications.file_rules import MB, REMOTE_URL, FileRules
from apps.applications.models import App
from apps.conversations.models import Message, MessageFile
from apps.core.file_formats import HEAD_BYTES, FileKind, content_matches, format_for_mime, format_of
from apps.files.errors import (
    FileContentMissing,
    FileQuotaExceeded,
    FileTooLarge,
    FileUnreadable,
)
from apps.files.extract import document_text_async
from apps.files.models import FilePurpose, StoredFile
from apps.files.remote import AddressPolicy, RemoteFileRefused, RemoteFileUnavailable, remote_fetch
from apps.files.services import file_bytes, file_delete, file_store, upload_expiry
from apps.providers.base import ImagePart
from apps.scheduling.tasks.errors import PermanentTaskError, RetryableTaskError
from apps.scheduling.tasks.kinds import RunContext


@dataclass(frozen=True)
class Document:
    name: str
    text: str
    truncated: bool  # cut while being read (more than could ever fit the window)


@dataclass(frozen=True)
class Attachments:
    images: tuple[ImagePart, ...] = ()
    documents: tuple[Document, ...] = ()


NO_ATTACHMENTS = Attachments()


def _refused(
    attachment: MessageFile, problem: str, code: str = "invalid_param"
) -> PermanentTaskError:
    return PermanentTaskError(f"files[{attachment.position}]: {problem}", code=code)


def _message_files(message_id: uuid.UUID) -> list[MessageFile]:
    return list(MessageFile.objects.filter(message_id=message_id).select_related("stored_file"))


async def attachments_prepare(
    message: Message, context: RunContext, *, max_document_chars: int, vision: bool
) -> Attachments:
    """The message's files as the model takes them; documents' text at most
    `max_document_chars` each (more could not fit the window). `vision`: the deployment that
    answers reads images."""
    files = await context.db(_message_files, message.id)
    if not files:
        return NO_ATTACHMENTS
    for attachment in files:
        if attachment.stored_file is not None:
            continue
        if attachment.transfer_method != REMOTE_URL:
            raise _refused(attachment, "the uploaded file was deleted.", code="file_not_found")
        await _fetch(message, attachment, context)
    loaded = await context.db(_read, message.app, files, vision)
    # The documents' text is read by a process of their own (apps.files.extract), waited for
    # on the loop: no database thread is held meanwhile.
    documents = [await _text(pending, max_document_chars) for pending in loaded.documents]
    return Attachments(images=loaded.images, documents=tuple(documents))


@dataclass(frozen=True)
class _PendingDocument:
    attachment: MessageFile
    stored: StoredFile
    content: bytes


@dataclass(frozen=True)
class _Loaded:
    images: tuple[ImagePart, ...]
    documents: tuple[_PendingDocument, ...]


async def _text(pending: _PendingDocument, max_chars: int) -> Document:
    stored = pending.stored
    try:
        extracted = await document_text_async(
            content=pending.content,
            mime_type=stored.mime_type,
            name=stored.filename,
            max_chars=max_chars,
        )
    except FileUnreadable as error:
        raise _refused(pending.attachment, error.message, error.code) from None
    return Document(stored.filename, extracted.text, extracted.truncated)


async def _fetch(message: Message, attachment: MessageFile, context: RunContext) -> None:
    rules = FileRules.of(message.app)
    limit = rules.max_bytes(attachment.kind)
    time_left = context.time_left_s()
    timeout_s = float(settings.FILE_REMOTE_TIMEOUT_S)
    try:
        fetched = await remote_fetch(
            attachment.url,
            max_bytes=limit,
            policy=AddressPolicy.from_settings(),
            timeout_s=min(timeout_s, time_left) if time_left is not None else timeout_s,
            max_redirects=int(settings.FILE_REMOTE_MAX_REDIRECTS),
        )
    except RemoteFileRefused as refused:
        raise _refused(attachment, f"{attachment.url} was not fetched: {refused}.") from None
    except RemoteFileUnavailable as unavailable:
        raise RetryableTaskError(
            f"files[{attachment.position}]: {attachment.url} could not be fetched: {unavailable}"
        ) from None
    fmt = format_of(fetched.filename) or format_for_mime(fetched.mime_type)
    if fmt is None or fmt.kind != attachment.kind or not rules.takes(fmt):
        what = fmt.label if fmt is not None else f"{fetched.mime_type or 'an unknown type'}"
        raise _refused(
            attachment,
            f"{attachment.url} is {what}, not a file this app takes as {attachment.kind}.",
        )
    if not content_matches(fmt, fetched.content[:HEAD_BYTES]):
        raise _refused(attachment, f"the content of {attachment.url} is not a {fmt.label}.")
    name = (
        fetched.filename
        if format_of(fetched.filename) is fmt
        else f"{fetched.filename or 'file'}{fmt.extension}"
    )

    def keep() -> StoredFile:
        try:
            stored = file_store(
                app=message.app,
                end_user=message.end_user,
                purpose=FilePurpose.UPLOAD,
                filename=name,
                mime_type=fmt.mime_type,
                chunks=[fetched.content],
                max_bytes=limit,
                expires_at=upload_expiry(),
                size_hint=len(fetched.content),
            )
        except FileQuotaExceeded as error:
            raise _refused(attachment, error.message, error.code) from None
        linked = MessageFile.objects.filter(id=attachment.id, stored_file__isnull=True).update(
            stored_file=stored
        )
        if linked:
            return stored
        # Another attempt of this task kept its copy first: use that one.
        file_delete(file=stored)
        kept = MessageFile.objects.select_related("stored_file").get(id=attachment.id).stored_file
        if kept is None:  # and then deleted: nothing to answer with
            raise _refused(attachment, f"{attachment.url}: the fetched copy was deleted.")
        return kept

    attachment.stored_file = await context.db(keep)


def _read(app: App, files: list[MessageFile], vision: bool) -> _Loaded:
    """The files' content: images as parts, documents' bytes for their text to be read."""
    rules = FileRules.of(app)
    ceiling = int(settings.FILE_UPLOAD_MAX_MB) * MB
    images: list[ImagePart] = []
    documents: list[_PendingDocument] = []
    for attachment in files:
        stored = attachment.stored_file
        assert stored is not None  # fetched above
        if attachment.kind == FileKind.IMAGE and not (rules.vision and vision):
            raise _refused(attachment, "the app's model does not read images.")
        try:
            content = file_bytes(stored, max_bytes=ceiling)
        except FileContentMissing:
            raise _refused(
                attachment, f"{stored.filename} was deleted.", "file_not_found"
            ) from None
        except FileTooLarge as error:
            raise _refused(attachment, error.message, error.code) from None
        if attachment.kind == FileKind.IMAGE:
            encoded = base64.b64encode(content).decode("ascii")
            url = f"data:{stored.mime_type};base64,{encoded}"
            images.append(ImagePart(url=url, detail=rules.image_detail))
        else:
            documents.append(_PendingDocument(attachment, stored, content))
    return _Loaded(images=tuple(images), documents=tuple(documents))
