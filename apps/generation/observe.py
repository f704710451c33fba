"""Answer metrics, recorded once the answer is committed: tokens and time to first token."""

from apps.conversations.models import Message
from apps.generation.answer import answer_succeeded
from apps.operations.metrics import TOKEN_BUCKETS, MetricsBatch
from apps.scheduling.models import Task


def answer_succeeded_observed(task: Task) -> None:
    answer_succeeded(task)
    message = Message.objects.filter(id=task.payload.get("message_id")).first()
    if message is None:
        return
    labels = {"provider": message.provider or "unknown"}
    metrics = MetricsBatch()
    metrics.inc("dp_completion_tokens_total", labels, message.completion_tokens)
    metrics.inc("dp_prompt_tokens_total", labels, message.prompt_tokens)
    metrics.observe(
        "dp_completion_tokens", float(message.completion_tokens), labels, buckets=TOKEN_BUCKETS
    )
    if message.first_token_s is not None:
        metrics.observe("dp_time_to_first_token_seconds", message.first_token_s, labels)
    metrics.send()
