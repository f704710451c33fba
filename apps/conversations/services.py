"""Recording a question: the conversation, the message, and the task that will answer it."""

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Model, Q
from django.utils import timezone

from apps.applications.end_users import end_user_record
from apps.applications.models import ApiKey, AppMode
from apps.conversations.attachments import attachments_resolve
from apps.conversations.inputs import inputs_validate
from apps.conversations.models import (
    Conversation,
    Feedback,
    Message,
    MessageFile,
    TransferMethod,
)
from apps.conversations.selectors import conversation_first_message, task_owned_by
from apps.core.errors import (
    AppUnavailable,
    IdempotencyKeyGone,
    InvalidParam,
    NotChatApp,
    NotFound,
)
from apps.core.priorities import Priority
from apps.files.models import StoredFile
from apps.files.services import file_delete
from apps.scheduling.coordination.stops import StopReason, task_request_stop
from apps.scheduling.models import Task, TaskStatus
from apps.scheduling.tasks.services import task_cancel, task_create, task_prepare, task_record

NEW_CONVERSATION_NAME = "New conversation"
# The task kind that titles conversations (registered by apps.generation.naming).
NAMING_KIND = "conversation_name"
# The task kind that suggests follow-up questions (registered by apps.generation.suggestions).
SUGGESTIONS_KIND = "suggested_questions"


@dataclass(frozen=True)
class Question:
    """A question past authentication, rate limits and validation, whichever door it came in
    by: everything recording it needs."""

    api_key: ApiKey
    route_mode: str | None  # the route's app mode; None: any app (/api/v1/ask, OpenAI's routes)
    end_user: str
    query: str
    inputs: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None  # None: a new conversation (chat apps)
    priority: str | None = None  # None: the app's default
    deadline_ms: int | None = None
    auto_generate_name: bool = True
    idempotency_key: str | None = None
    request_hash: str = ""  # what the Idempotency-Key's request asked (apps.gateway.pipeline)
    files: list[dict[str, Any]] = field(default_factory=list)
    # A stateless request's earlier turns (OpenAI's routes); None: the conversation's.
    history: list[dict[str, str]] | None = None
    # The request's own generation settings (OpenAI's routes), over the app's.
    generation: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmittedAnswer:
    task: Task
    message: Message
    conversation: Conversation | None
    # True when an earlier request with the same Idempotency-Key recorded it.
    replayed: bool = False


def _check_route(app_mode: str, route_mode: str) -> None:
    if route_mode == AppMode.CHAT and app_mode != AppMode.CHAT:
        raise NotChatApp()
    if route_mode == AppMode.COMPLETION and app_mode != AppMode.COMPLETION:
        raise AppUnavailable()


def answer_submit(*, question: Question) -> SubmittedAnswer:
    """Record the question (with the files sent with it, apps.conversations.attachments) and
    queue its answer. A question for any app (`route_mode` None) is answered as one turn without
    history, or with the `history` the request sent, and its own `generation` settings. A new
    conversation with `auto_generate_name` gets a title after its first answer, from
    low-priority work that never delays that answer.

    With an `idempotency_key` already used in this app (also by a request racing this one), the
    first request's submission comes back instead, `replayed`, with nothing recorded; its
    `request_hash` (kept in the task's payload) tells the caller whether it was the same request.
    """
    try:
        return _answer_record(question)
    except IntegrityError:
        key = question.idempotency_key
        existing = (
            answer_submission_by_key(
                app_id=question.api_key.app_id, end_user=question.end_user, idempotency_key=key
            )
            if key is not None
            else None
        )
        if existing is None:
            raise
        return existing


def answer_submission_by_key(
    *, app_id: uuid.UUID, end_user: str, idempotency_key: str
) -> SubmittedAnswer | None:
    """The submission an earlier request of this end user with this Idempotency-Key recorded,
    if any. Keys are the end user's own: another user's key names nothing of theirs."""
    task = Task.objects.filter(
        app_id=app_id, end_user=end_user, idempotency_key=idempotency_key
    ).first()
    if task is None:
        return None
    message = Message.objects.select_related("conversation").filter(task=task).first()
    if message is None:
        # Its conversation was deleted (which frees the key, see conversation_delete); a race
        # with that delete lands here.
        raise IdempotencyKeyGone(
            "The request recorded with this Idempotency-Key was deleted with its conversation: "
            "send it with a new key."
        )
    return SubmittedAnswer(
        task=task, message=message, conversation=message.conversation, replayed=True
    )


def _answer_record(question: Question) -> SubmittedAnswer:
    """Everything new (a conversation, the message and its files, the task and its first event)
    is written in one statement: this is the request path, and one durable commit is most of
    its cost."""
    api_key, end_user = question.api_key, question.end_user
    app = api_key.app
    if question.route_mode is not None:
        _check_route(app.mode, question.route_mode)
    cleaned_inputs = inputs_validate(user_input_form=app.user_input_form, inputs=question.inputs)
    attachments = attachments_resolve(app=app, end_user=end_user, files=question.files)

    conversation = None
    new_rows: list[Model] = []
    conversation_id = question.conversation_id
    if question.route_mode == AppMode.CHAT:
        if conversation_id:
            conversation = Conversation.objects.filter(
                id=conversation_id, app=app, end_user=end_user
            ).first()
            if conversation is None:
                raise NotFound("Conversation Not Exists.")
            cleaned_inputs = conversation.inputs or cleaned_inputs
            Conversation.objects.filter(id=conversation.id).update(updated_at=timezone.now())
        else:
            conversation = Conversation(
                id=uuid.uuid4(),
                app=app,
                end_user=end_user,
                name=NEW_CONVERSATION_NAME,
                inputs=cleaned_inputs,
            )
            new_rows.append(conversation)

    # The message's id is chosen first so that the task can name it and the message can point to
    # its task, with no UPDATE afterwards.
    message_id = uuid.uuid4()
    payload: dict[str, Any] = {"message_id": str(message_id)}
    if conversation is not None and not conversation_id:
        # Nothing earlier to read into the prompt.
        payload["first_turn"] = True
        if question.auto_generate_name:
            # Titled after the first answer, by low-priority work (the answer kind's on_success).
            payload["name_conversation"] = True
    if question.request_hash:
        payload["request_hash"] = question.request_hash
    grant = api_key.priority_grant(question.priority)
    deadline_ms = question.deadline_ms
    prepared = task_prepare(
        kind=app.mode,
        app=app,
        end_user=end_user,
        payload=payload,
        requested_priority=grant.requested,
        priority=grant.granted,
        priority_reason=grant.reason,
        max_attempts=app.max_attempts,
        deadline_at=timezone.now() + timedelta(milliseconds=deadline_ms) if deadline_ms else None,
        idempotency_key=question.idempotency_key,
    )
    message = Message(
        id=message_id,
        app=app,
        conversation=conversation,
        end_user=end_user,
        inputs=cleaned_inputs,
        query=question.query,
        task=prepared.task,
        history=question.history,
        generation=question.generation,
    )
    for attachment in attachments:
        attachment.message = message
    task_record(prepared, *new_rows, message, *attachments)
    return SubmittedAnswer(task=prepared.task, message=message, conversation=conversation)


def answer_stop(*, api_key: ApiKey, task_id: str, end_user: str) -> bool:
    """Ask the worker to stop the answer; the partial answer is kept and the stream ends normally.

    Like Dify, a stop for an unknown task or another user's task answers success and changes
    nothing; returns whether a stop was actually requested.
    """
    owned = task_owned_by(app_id=api_key.app_id, task_id=task_id, end_user=end_user)
    if owned:
        task_request_stop(task_id=task_id, reason=StopReason.STOP)
    return owned


def conversation_name_request(
    *,
    conversation: Conversation,
    requested_priority: str,
    priority: str | None = None,
    automatic: bool = True,
) -> Task:
    """Queue a title for the conversation, made from its first exchange by the app's model.

    Automatic naming waits for the first answer and never replaces a name someone chose; a
    requested one (rename with `auto_generate`) names at once and replaces the current name.
    """
    return task_create(
        kind=NAMING_KIND,
        app=conversation.app,
        end_user=conversation.end_user,
        payload={"conversation_id": str(conversation.id), "automatic": automatic},
        requested_priority=requested_priority,
        priority=priority,
    )


@transaction.atomic
def conversation_name_generate(*, api_key: ApiKey, conversation: Conversation) -> Task:
    """Name the conversation now, for a caller who waits: urgent, within the key's allowance."""
    if conversation_first_message(conversation_id=conversation.id) is None:
        raise InvalidParam("The conversation has no messages to generate a name from.")
    return conversation_name_request(
        conversation=conversation,
        requested_priority=Priority.HIGH,
        priority=api_key.priority_grant(Priority.HIGH).granted,
        automatic=False,
    )


@transaction.atomic
def conversation_rename(*, conversation: Conversation, name: str) -> Conversation:
    Conversation.objects.filter(id=conversation.id).update(name=name, updated_at=timezone.now())
    conversation.refresh_from_db()
    return conversation


@transaction.atomic
def conversation_delete(*, conversation: Conversation) -> None:
    """Delete the conversation with its messages and their feedback.

    Its unfinished work (answers, naming) is cancelled first, while the rows it reports to still
    exist: waiting tasks end at once, running ones stop within a token or two.
    """
    unfinished = Task.objects.filter(status__in=TaskStatus.ACTIVE).filter(
        Q(messages__conversation=conversation) | Q(payload__conversation_id=str(conversation.id))
    )
    for task_id in unfinished.values_list("id", flat=True).distinct():
        task_cancel(task_id=task_id, actor="conversation deleted")
    # The answers' Idempotency-Keys go with them: a retry with one is a new request, not a
    # replay of something that no longer exists.
    Task.objects.filter(messages__conversation=conversation, idempotency_key__isnull=False).update(
        idempotency_key=None
    )
    # Files fetched from URLs for its messages are copies of their own; uploads stay with the end
    # user, who may send them again.
    fetched = StoredFile.objects.filter(
        id__in=MessageFile.objects.filter(
            message__conversation=conversation, transfer_method=TransferMethod.REMOTE_URL
        ).values("stored_file_id")
    )
    for file in fetched:
        file_delete(file=file)
    conversation.delete()


@transaction.atomic
def message_feedback_submit(
    *, message: Message, end_user: str, rating: str | None, content: str = ""
) -> None:
    """Rate the answer, change the rating, or with `rating` None take the rating back."""
    if rating is None:
        deleted, _ = Feedback.objects.filter(message=message).delete()
        if not deleted:
            raise InvalidParam("rating cannot be None when feedback not exists.")
        return
    Feedback.objects.update_or_create(
        message=message, defaults={"end_user": end_user, "rating": rating, "content": content}
    )
    # Feedback lists name the end user by id (GET /v1/app/feedbacks): it must resolve.
    end_user_record(app_id=message.app_id, external_id=end_user)


@transaction.atomic
def message_suggestions_request(
    *, message: Message, requested_priority: str, priority: str | None = None
) -> Task:
    """Queue follow-up questions for the message's answer, made by the app's model; the
    message names the task, so a caller can wait for it (GET /v1/messages/{id}/suggested)."""
    task = task_create(
        kind=SUGGESTIONS_KIND,
        app=message.app,
        end_user=message.end_user,
        # The conversation's id lets a deletion of the conversation cancel the task.
        payload={"message_id": str(message.id), "conversation_id": str(message.conversation_id)},
        requested_priority=requested_priority,
        priority=priority,
    )
    Message.objects.filter(id=message.id).update(suggestions_task=task)
    message.suggestions_task = task
    return task
