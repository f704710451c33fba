"""Reads scoped to one app and one end user."""

import uuid
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db.models import Q, QuerySet

from apps.applications.models import App
from apps.conversations.models import Conversation, Feedback, Message
from apps.core.errors import NotFound
from apps.scheduling.models import Task

Row = TypeVar("Row", Conversation, Message, Feedback)

# sort_by values Dify accepts for conversations: (field, descending).
CONVERSATION_SORTS: dict[str, tuple[str, bool]] = {
    "created_at": ("created_at", False),
    "-created_at": ("created_at", True),
    "updated_at": ("updated_at", False),
    "-updated_at": ("updated_at", True),
}


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    has_more: bool


def task_owned_by(*, app_id: uuid.UUID, task_id: str, end_user: str) -> bool:
    """Whether the task answers a question of this end user of this app."""
    return Task.objects.filter(id=task_id, app_id=app_id, end_user=end_user).exists()


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def conversation_get(*, app: App, end_user: str, conversation_id: str) -> Conversation:
    """The end user's conversation; NotFound for anyone else's, an unknown id or a malformed one."""
    found = _as_uuid(conversation_id)
    conversation = (
        Conversation.objects.select_related("app")
        .filter(id=found, app=app, end_user=end_user)
        .first()
        if found
        else None
    )
    if conversation is None:
        raise NotFound("Conversation Not Exists.")
    return conversation


def message_get(*, app: App, end_user: str, message_id: str) -> Message:
    found = _as_uuid(message_id)
    message = (
        Message.objects.filter(id=found, app=app, end_user=end_user).first() if found else None
    )
    if message is None:
        raise NotFound("Message Not Exists.")
    return message


def _after(field: str, descending: bool, reference: Conversation | Message) -> Q:
    """Rows strictly after `reference` in (field, id) order: ties on the timestamp are broken by
    id, so no row is skipped or repeated between pages."""
    value = getattr(reference, field)
    op = "lt" if descending else "gt"
    return Q(**{f"{field}__{op}": value}) | Q(**{field: value, f"id__{op}": reference.id})


def _page(rows: QuerySet[Row], limit: int) -> Page[Row]:
    fetched = list(rows[: limit + 1])
    return Page(rows=fetched[:limit], has_more=len(fetched) > limit)


def message_list(*, conversation: Conversation, first_id: str | None, limit: int) -> Page[Message]:
    """The newest `limit` messages older than `first_id` (or the newest of all), oldest first
    within the page, as Dify returns them; `has_more` says whether older ones remain."""
    rows = (
        Message.objects.filter(conversation=conversation)
        .select_related("feedback")
        .prefetch_related("files__stored_file")
    )
    if first_id:
        found = _as_uuid(first_id)
        reference = rows.filter(id=found).first() if found else None
        if reference is None:
            raise NotFound("First Message Not Exists.")
        rows = rows.filter(_after("created_at", True, reference))
    page = _page(rows.order_by("-created_at", "-id"), limit)
    return Page(rows=list(reversed(page.rows)), has_more=page.has_more)


def conversation_first_message(*, conversation_id: uuid.UUID | str) -> Message | None:
    return (
        Message.objects.select_related("app")
        .filter(conversation_id=conversation_id)
        .order_by("created_at", "id")
        .first()
    )


def feedback_page(*, app: App, page: int, limit: int) -> Page[Feedback]:
    """A page of the feedback on the app's answers, newest first (Dify's page numbers)."""
    rows = (
        Feedback.objects.filter(message__app=app)
        .select_related("message")
        .order_by("-created_at", "-id")
    )
    offset = (page - 1) * limit
    fetched = list(rows[offset : offset + limit + 1])
    return Page(rows=fetched[:limit], has_more=len(fetched) > limit)
