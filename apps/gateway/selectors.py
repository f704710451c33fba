"""Reads for the input layer."""

import uuid

from apps.conversations.models import Message, MessageStatus


def message_is_complete(*, message_id: uuid.UUID) -> bool:
    """Whether the answer ended normally (not stopped, not failed): only those are cached."""
    return Message.objects.filter(id=message_id, status=MessageStatus.NORMAL).exists()
