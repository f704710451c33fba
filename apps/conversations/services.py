"""Recording a question: the conversation, the message, and the task that will answer it."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.applications.models import ApiKey, AppMode
from apps.conversations.inputs import inputs_validate
from apps.conversations.models import Conversation, Message
from apps.conversations.selectors import task_owned_by
from apps.core.errors import AppUnavailable, NotChatApp, NotFound
from apps.core.priorities import capped_priority
from apps.scheduling.control import task_request_stop
from apps.scheduling.models import Task
from apps.scheduling.services import task_create

NEW_CONVERSATION_NAME = "New conversation"


@dataclass(frozen=True)
class SubmittedAnswer:
    task: Task
    message: Message
    conversation: Conversation | None


def _check_route(app_mode: str, route_mode: str) -> None:
    if route_mode == AppMode.CHAT and app_mode != AppMode.CHAT:
        raise NotChatApp()
    if route_mode == AppMode.COMPLETION and app_mode != AppMode.COMPLETION:
        raise AppUnavailable()


@transaction.atomic
def answer_submit(
    *,
    api_key: ApiKey,
    route_mode: str | None,
    end_user: str,
    query: str,
    inputs: dict[str, Any],
    conversation_id: str | None = None,
    priority: str | None = None,
    deadline_ms: int | None = None,
) -> SubmittedAnswer:
    """Record the question and queue its answer. `route_mode` None means any app (`/api/v1/ask`),
    answered as one turn without history."""
    app = api_key.app
    if route_mode is not None:
        _check_route(app.mode, route_mode)
    cleaned_inputs = inputs_validate(user_input_form=app.user_input_form, inputs=inputs)

    conversation = None
    if route_mode == AppMode.CHAT:
        if conversation_id:
            conversation = Conversation.objects.filter(
                id=conversation_id, app=app, end_user=end_user
            ).first()
            if conversation is None:
                raise NotFound("Conversation Not Exists.")
            cleaned_inputs = conversation.inputs or cleaned_inputs
            Conversation.objects.filter(id=conversation.id).update(updated_at=timezone.now())
        else:
            conversation = Conversation.objects.create(
                app=app, end_user=end_user, name=NEW_CONVERSATION_NAME, inputs=cleaned_inputs
            )

    message = Message.objects.create(
        app=app, conversation=conversation, end_user=end_user, inputs=cleaned_inputs, query=query
    )
    requested = priority or app.default_priority
    effective = capped_priority(requested, api_key.max_priority)
    reason = (
        "" if effective == requested else f"capped to the key's maximum ({api_key.max_priority})"
    )
    task = task_create(
        kind=app.mode,
        app=app,
        end_user=end_user,
        payload={"message_id": str(message.id)},
        requested_priority=requested,
        priority=effective,
        priority_reason=reason,
        max_attempts=app.max_attempts,
        deadline_at=timezone.now() + timedelta(milliseconds=deadline_ms) if deadline_ms else None,
    )
    message.task = task
    message.save(update_fields=["task"])
    return SubmittedAnswer(task=task, message=message, conversation=conversation)


def answer_stop(*, api_key: ApiKey, task_id: str, end_user: str) -> bool:
    """Ask the worker to stop the answer; the partial answer is kept and the stream ends normally.

    Like Dify, a stop for an unknown task or another user's task answers success and changes
    nothing; returns whether a stop was actually requested.
    """
    owned = task_owned_by(app_id=api_key.app_id, task_id=task_id, end_user=end_user)
    if owned:
        task_request_stop(task_id=task_id, reason="stop")
    return owned
