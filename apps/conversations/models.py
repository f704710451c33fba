"""Conversations, the messages in them, and feedback on messages."""

from decimal import Decimal

from django.db import models

from apps.applications.models import App
from apps.core.models import TimestampedModel


class Conversation(TimestampedModel):
    """A chat thread between one end user and one app."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="conversations")
    end_user = models.CharField(max_length=255, db_index=True)
    name = models.CharField(max_length=255, blank=True, default="")
    inputs = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["app", "end_user", "-updated_at"])]

    def __str__(self) -> str:
        return self.name or str(self.id)


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    NORMAL = "normal", "Normal"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"


class Message(TimestampedModel):
    """One question and its answer. A completion app's messages have no conversation."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="messages")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, null=True, blank=True, related_name="messages"
    )
    end_user = models.CharField(max_length=255, db_index=True)
    inputs = models.JSONField(default=dict, blank=True)
    query = models.TextField(blank=True, default="")
    answer = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=MessageStatus.choices, default=MessageStatus.PENDING
    )
    error = models.TextField(blank=True, default="")

    provider = models.CharField(max_length=16, blank=True, default="")
    model_name = models.CharField(max_length=255, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_s = models.FloatField(
        null=True, blank=True, help_text="From task start to the last token."
    )
    first_token_s = models.FloatField(
        null=True, blank=True, help_text="From task start to the first token."
    )
    # What the answer cost: the app's rates when it was saved, and the total (see
    # apps.conversations.pricing).
    prompt_unit_price = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    completion_unit_price = models.DecimalField(
        max_digits=20, decimal_places=10, default=Decimal(0)
    )
    price_unit = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal("0.000001"))
    total_price = models.DecimalField(max_digits=20, decimal_places=7, default=Decimal(0))
    currency = models.CharField(max_length=8, default="USD")
    task = models.ForeignKey(
        "scheduling.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    # Follow-up questions the app's model suggested after the answer (apps.generation.
    # suggestions); None until generated. The task that generates them, for callers who wait.
    suggested_questions = models.JSONField(null=True, blank=True)
    suggestions_task = models.ForeignKey(
        "scheduling.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # A stateless request (OpenAI's /v1/chat/completions, a batch line) sends its conversation
    # itself: the turns before `query`, as [{"role", "content"}]. None: the history is the
    # conversation's earlier messages.
    history = models.JSONField(null=True, blank=True)
    # The request's own generation settings over the app's (max_tokens, temperature, top_p,
    # stop, seed, presence_penalty, frequency_penalty).
    generation = models.JSONField(default=dict, blank=True)
    # Why the model stopped: "stop", "length", "user_stop", "moderated" ("" until answered).
    finish_reason = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["conversation", "-created_at"])]

    def __str__(self) -> str:
        return self.query[:60] or str(self.id)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TransferMethod(models.TextChoices):
    LOCAL_FILE = "local_file", "Uploaded (local_file)"
    REMOTE_URL = "remote_url", "By URL (remote_url)"


class MessageFile(TimestampedModel):
    """A file sent with a question: an upload (`local_file`), or a URL (`remote_url`) that the
    worker answering it fetches and keeps as a stored file of its own (so a retry, the history
    and the preview see the same bytes the model saw)."""

    # The unique (message, position) constraint's index serves the foreign key too.
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="files", db_index=False
    )
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=16, help_text="image or document (Dify's `type`).")
    transfer_method = models.CharField(max_length=16, choices=TransferMethod.choices)
    url = models.TextField(blank=True, default="", help_text="The URL of a `remote_url` file.")
    stored_file = models.ForeignKey(
        "files.StoredFile", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "position"], name="conversations_message_file_position"
            )
        ]

    def __str__(self) -> str:
        return self.url or str(self.stored_file_id)


class Feedback(TimestampedModel):
    """An end user's rating of an answer."""

    class Rating(models.TextChoices):
        LIKE = "like", "Like"
        DISLIKE = "dislike", "Dislike"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    end_user = models.CharField(max_length=255)
    rating = models.CharField(max_length=8, choices=Rating.choices)
    content = models.TextField(blank=True, default="")
