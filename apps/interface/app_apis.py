"""More of Dify's Service API around an app: suggested questions after an answer, the feedback
list, the web app's settings (site) and end users. Thin views over selectors and services."""

import asyncio
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from rest_framework import serializers

from apps.api.negotiation import document_response
from apps.applications.end_users import end_user_get
from apps.applications.models import ApiKey, App, AppMode, EndUser
from apps.conversations.models import Feedback, Message, MessageStatus
from apps.conversations.selectors import feedback_page, message_get
from apps.conversations.services import message_suggestions_request
from apps.core.db import db_sync_to_async
from apps.core.errors import BadRequest, DeadlineExceeded, NotChatApp
from apps.core.priorities import PRIORITY_RANK, Priority
from apps.dify.events import FINAL_EVENTS
from apps.dify.requests import MAX_USER_CHARS, USER_ERRORS, FlatSerializer, StrictCharField
from apps.gateway.admission import admitted_query, authenticated, rate_limit
from apps.generation.suggestions import suggested_questions_wait
from apps.interface.views import dify_view
from apps.scheduling.models import Task, TaskStatus
from apps.streams.feeds import events_follow

MAX_FEEDBACK_LIMIT = 101  # Dify's


class UserQuery(FlatSerializer):
    user = StrictCharField(max_length=MAX_USER_CHARS, required=True, error_messages=USER_ERRORS)


def _message(app: App, user: str, message_id: str) -> Message:
    return message_get(app=app, end_user=user, message_id=message_id)


def _suggestions_requested(api_key: ApiKey, message: Message) -> str:
    """Suggestions for a message that has no task making them (answered before the app turned
    the feature on, say): the caller waits, so they are urgent, within the key's allowance."""
    message.app = api_key.app
    task = message_suggestions_request(
        message=message,
        requested_priority=Priority.HIGH,
        priority=api_key.priority_grant(Priority.HIGH).granted,
    )
    return str(task.id)


def _suggestions_task(api_key: ApiKey, message: Message) -> str:
    """The task to wait for: the message's own, unless there is none or it still waits in a
    queue less urgent than a caller who waits deserves (low work is deferred under load); then
    an urgent one, and the other finds the questions made when it runs."""
    urgent = api_key.priority_grant(Priority.HIGH).granted
    if message.suggestions_task_id is not None:
        queued = Task.objects.filter(
            id=message.suggestions_task_id, status__in=(TaskStatus.PENDING, *TaskStatus.WAITING)
        ).values_list("priority", flat=True)
        waiting = next(iter(queued), None)
        if waiting is None or PRIORITY_RANK[Priority(waiting)] <= PRIORITY_RANK[Priority(urgent)]:
            return str(message.suggestions_task_id)
    return _suggestions_requested(api_key, message)


async def _answer_ended(task_id: str, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            async for _ in events_follow(task_id=task_id, until=FINAL_EVENTS):
                pass
    except TimeoutError:
        return False
    return True


async def _suggested(api_key: ApiKey, message: Message, user: str) -> list[str]:
    """The message's suggestions; waits (up to BLOCKING_TIMEOUT_S in all) for its answer and
    for the work that makes them when they are not made yet."""
    timeout_s = float(settings.PLATFORM["BLOCKING_TIMEOUT_S"])
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + timeout_s
    reread = db_sync_to_async(_message)
    if message.status == MessageStatus.PENDING and message.task_id is not None:
        await _answer_ended(str(message.task_id), timeout_s)
        message = await reread(api_key.app, user, str(message.id))
    if message.suggested_questions is not None:
        return list(message.suggested_questions)
    if message.status == MessageStatus.PENDING:
        raise DeadlineExceeded(f"The answer was not finished within {timeout_s:g} s.")
    if message.status == MessageStatus.ERROR or not message.answer:
        return []  # no answer to follow up on
    task_id = await db_sync_to_async(_suggestions_task)(api_key, message)
    left_s = max(0.0, give_up_at - loop.time())
    if not await suggested_questions_wait(task_id=task_id, timeout_s=left_s):
        raise DeadlineExceeded(
            f"The suggested questions were not ready within {timeout_s:g} s; ask again later."
        )
    message = await reread(api_key.app, user, str(message.id))
    return list(message.suggested_questions or [])


@dify_view("GET")
async def message_suggested(request: HttpRequest, media: str, message_id: str) -> HttpResponseBase:
    """Dify's next suggested questions for an answer (apps with the feature on)."""
    api_key, data = await admitted_query(request, UserQuery)
    app: App = api_key.app
    if app.mode != AppMode.CHAT:
        raise NotChatApp()
    message = await db_sync_to_async(_message)(app, data["user"], message_id)
    if not app.suggested_questions_after_answer:
        raise BadRequest("Suggested questions feature is disabled.")
    questions = await _suggested(api_key, message, data["user"])
    return document_response({"result": "success", "data": questions}, media)


class FeedbackListQuery(FlatSerializer):
    page = serializers.IntegerField(required=False, default=1, min_value=1, max_value=1_000_000)
    limit = serializers.IntegerField(
        required=False, default=20, min_value=1, max_value=MAX_FEEDBACK_LIMIT
    )


def _iso(value: datetime) -> str:
    return value.isoformat()


def feedback_document(feedback: Feedback) -> dict[str, Any]:
    message = feedback.message
    return {
        "id": str(feedback.id),
        "app_id": str(message.app_id),
        "conversation_id": str(message.conversation_id) if message.conversation_id else None,
        "message_id": str(message.id),
        "rating": feedback.rating,
        "content": feedback.content or None,
        "from_source": "user",
        "from_end_user_id": str(EndUser.id_for(message.app_id, feedback.end_user)),
        "from_account_id": None,
        "created_at": _iso(feedback.created_at),
        "updated_at": _iso(feedback.updated_at),
    }


def _feedbacks(app: App, data: dict[str, Any]) -> dict[str, Any]:
    found = feedback_page(app=app, page=data["page"], limit=data["limit"])
    return {
        "data": [feedback_document(feedback) for feedback in found.rows],
        "has_more": found.has_more,
        "limit": data["limit"],
        "page": data["page"],
    }


@dify_view("GET")
async def app_feedbacks(request: HttpRequest, media: str) -> HttpResponseBase:
    """Every end user's feedback on the app's answers, newest first: for the app's owner (the
    key), not scoped to one end user."""
    api_key, data = await admitted_query(request, FeedbackListQuery)
    return document_response(await db_sync_to_async(_feedbacks)(api_key.app, data), media)


def site_document(app: App) -> dict[str, Any]:
    """The web app's presentation as Dify's /v1/site describes it."""
    return {
        "title": app.name,
        "chat_color_theme": app.site_chat_color_theme,
        "chat_color_theme_inverted": app.site_chat_color_theme_inverted,
        "icon_type": "emoji",
        "icon": app.site_icon,
        "icon_background": app.site_icon_background,
        "icon_url": None,
        "description": app.description,
        "copyright": app.site_copyright,
        "privacy_policy": app.site_privacy_policy,
        "input_placeholder": app.site_input_placeholder or None,
        "custom_disclaimer": app.site_custom_disclaimer,
        "default_language": app.site_default_language,
        "show_workflow_steps": False,
        "use_icon_as_answer_icon": app.site_use_icon_as_answer_icon,
    }


@dify_view("GET")
async def site(request: HttpRequest, media: str) -> HttpResponseBase:
    api_key = await authenticated(request)
    await rate_limit(api_key, request.GET.get("user") or None)
    return document_response(site_document(api_key.app), media)


def end_user_document(end_user: EndUser) -> dict[str, Any]:
    return {
        "id": str(end_user.id),
        # The platform has no workspaces: each app is its own tenant.
        "tenant_id": str(end_user.app_id),
        "app_id": str(end_user.app_id),
        "type": "service-api",
        "external_user_id": end_user.external_id,
        "name": None,
        "is_anonymous": False,
        "session_id": end_user.external_id,
        "created_at": _iso(end_user.created_at),
        "updated_at": _iso(end_user.updated_at),
    }


@dify_view("GET")
async def end_user_detail(request: HttpRequest, media: str, end_user_id: str) -> HttpResponseBase:
    """One of the app's end users, by the id Dify's responses name them by (an upload's
    `created_by`, a feedback's `from_end_user_id`)."""
    api_key = await authenticated(request)
    await rate_limit(api_key, request.GET.get("user") or None)
    end_user = await db_sync_to_async(end_user_get)(app_id=api_key.app_id, end_user_id=end_user_id)
    return document_response(end_user_document(end_user), media)
