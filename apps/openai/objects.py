"""OpenAI's objects for an answer (`chat.completion`) and an app's model (`model`): what the
chat completions route answers, and what a batch's output file holds for each request."""

import uuid
from dataclasses import dataclass
from typing import Any

from apps.applications.models import App
from apps.deployments.selectors import AppRoute

# Why the model stopped, in OpenAI's words (a stop by the client is a normal end for it).
FINISH_REASONS = {"user_stop": "stop", "moderated": "content_filter"}


def completion_id(task_id: str) -> str:
    return f"chatcmpl-{uuid.UUID(task_id).hex}"


def finish_reason(end_event: dict[str, Any]) -> str:
    reason = str(end_event.get("finish_reason") or "stop")
    return FINISH_REASONS.get(reason, reason)


def usage_of(end_event: dict[str, Any]) -> dict[str, int]:
    usage = (end_event.get("metadata") or {}).get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@dataclass(frozen=True)
class CompletionHead:
    """What every object of one completion carries."""

    id: str
    created: int
    model: str

    def fields(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


def chat_completion(head: CompletionHead, answer: str, end_event: dict[str, Any]) -> dict[str, Any]:
    return {
        **head.fields("chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(end_event),
            }
        ],
        "usage": usage_of(end_event),
        "system_fingerprint": None,
    }


def model_object(app: App, route: AppRoute) -> dict[str, Any]:
    """The app's model, as /v1/models lists it: the name requests must give as `model`."""
    return {
        "id": route.model_name,
        "object": "model",
        "created": int(app.created_at.timestamp()),
        "owned_by": route.all[0].provider if route.all else "dify-platform",
    }
