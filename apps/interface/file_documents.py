"""Files as Dify's documents describe them: the `file_upload` feature and `system_parameters` of
/v1/parameters, and the `message_files` of a message."""

from typing import Any
from urllib.parse import quote

from apps.applications.file_rules import MB, FileRules
from apps.conversations.models import MessageFile, TransferMethod
from apps.core.file_formats import FileKind


def file_upload_feature(rules: FileRules) -> dict[str, Any]:
    """Dify's `file_upload`: the current keys, and the older `image` block clients still read."""
    images = rules.enabled and FileKind.IMAGE in rules.kinds
    return {
        "enabled": rules.enabled,
        "allowed_file_types": list(rules.kinds) if rules.enabled else [],
        "allowed_file_extensions": list(rules.extensions) if rules.enabled else [],
        "allowed_file_upload_methods": list(rules.methods) if rules.enabled else [],
        "number_limits": rules.number_limit,
        "image": {
            "enabled": images,
            "number_limits": rules.number_limit,
            "detail": rules.image_detail,
            "transfer_methods": list(rules.methods),
        },
    }


def system_parameters(rules: FileRules) -> dict[str, int]:
    """Size limits in MB, as Dify reports them; no audio or video is taken (0)."""
    return {
        "file_size_limit": rules.document_max_bytes // MB,
        "image_file_size_limit": rules.image_max_bytes // MB,
        "audio_file_size_limit": 0,
        "video_file_size_limit": 0,
        "workflow_file_upload_limit": rules.number_limit,
    }


def message_file_document(attachment: MessageFile) -> dict[str, Any]:
    """Dify's MessageFileItem. An upload's `url` is its preview route (relative: read it with
    the app's key); a file sent by URL keeps that URL."""
    stored = attachment.stored_file
    upload = attachment.transfer_method == TransferMethod.LOCAL_FILE
    url: str | None = attachment.url or None
    if upload and stored is not None:
        url = f"/v1/files/{stored.id}/preview?user={quote(stored.end_user)}"
    return {
        "id": str(attachment.id),
        "filename": stored.filename if stored is not None else attachment.url.rsplit("/", 1)[-1],
        "type": attachment.kind,
        "url": url,
        "mime_type": stored.mime_type if stored is not None else None,
        "size": stored.size if stored is not None else None,
        "transfer_method": attachment.transfer_method,
        "belongs_to": "user",
        "upload_file_id": str(stored.id) if upload and stored is not None else None,
    }
