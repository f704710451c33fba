"""When an operator sends a failed answer back to the queue, its readers must start afresh."""

from apps.conversations.models import Message, MessageStatus
from apps.scheduling.models import Task
from apps.streams.log import event_log_clear


def answer_requeued(task: Task) -> None:
    """The old stream ended with an error event: clear it, so a reader waits for the new answer."""
    event_log_clear(task_id=str(task.id))
    Message.objects.filter(id=task.payload.get("message_id")).update(
        status=MessageStatus.PENDING, error=""
    )
