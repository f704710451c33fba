"""Conversation and message rows with chosen timestamps, for paging tests."""

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from apps.applications.models import App
from apps.conversations.models import Conversation, Message, MessageStatus

EPOCH = timezone.now().replace(microsecond=0) - timedelta(days=1)


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def make_conversation(
    app: App,
    *,
    user: str = "u1",
    name: str = "Chat",
    created_s: float = 0,
    updated_s: float | None = None,
    **fields: Any,
) -> Conversation:
    conversation = Conversation.objects.create(app=app, end_user=user, name=name, **fields)
    # auto_now fields ignore values given to create(); an UPDATE sets them as the test needs.
    Conversation.objects.filter(id=conversation.id).update(
        created_at=at(created_s), updated_at=at(created_s if updated_s is None else updated_s)
    )
    conversation.refresh_from_db()
    return conversation


def make_message(
    conversation: Conversation,
    *,
    query: str = "question",
    answer: str = "answer",
    status: str = MessageStatus.NORMAL,
    created_s: float = 0,
    **fields: Any,
) -> Message:
    message = Message.objects.create(
        app=conversation.app,
        conversation=conversation,
        end_user=conversation.end_user,
        query=query,
        answer=answer,
        status=status,
        **fields,
    )
    Message.objects.filter(id=message.id).update(created_at=at(created_s))
    message.refresh_from_db()
    return message
