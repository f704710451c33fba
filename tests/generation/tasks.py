"""Submitting a question and running its task in this process, as a worker would."""

import json
from typing import Any

from apps.applications.models import ApiKey, App
from apps.conversations.models import Message
from apps.conversations.services import Question, answer_submit
from apps.core.redis import sync_client
from apps.scheduling.models import Task
from apps.scheduling.runtime.runner import task_execute
from apps.streams.log import stream_key
from tests.factories import make_app, make_key


def submit_to(
    app: App,
    query: str = "hi",
    *,
    inputs: dict[str, Any] | None = None,
    conversation_id: str | None = None,
) -> Task:
    api_key, _ = make_key(app)
    api_key = ApiKey.objects.select_related("app").get(id=api_key.id)
    submitted = answer_submit(
        question=Question(
            api_key=api_key,
            route_mode=app.mode,
            end_user="u1",
            query=query,
            inputs=inputs or {},
            conversation_id=conversation_id,
        )
    )
    return submitted.task


def submit(query: str = "hi", **app_fields: Any) -> Task:
    return submit_to(make_app(**app_fields), query)


def run(task: Task) -> Task:
    task_execute(task_id=str(task.id), worker_name="in-process")
    task.refresh_from_db()
    return task


def events(task: Task) -> list[dict[str, Any]]:
    entries: Any = sync_client().xrange(stream_key(str(task.id)))
    return [json.loads(fields[b"d"]) for _, fields in entries]


def shown_answer(task: Task) -> str:
    """The answer as a client following the stream shows it (replacements included)."""
    text = ""
    for event in events(task):
        if event["event"] == "message":
            text += event["answer"]
        elif event["event"] == "message_replace":
            text = event["answer"]
    return text


def message_of(task: Task) -> Message:
    return Message.objects.select_related("app").get(task=task)
