"""Conversations and messages for the operator: who asked what, the answer, and how long it took."""

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from apps.conversations.models import Conversation, Feedback, Message, MessageFile
from apps.core.admin_display import EMPTY, moment_column, seconds_display
from apps.deployments.models import ProviderKind


def _short(text: str, length: int = 60) -> str:
    return Truncator(text).chars(length) or EMPTY


MESSAGE_INLINE_FIELDS = ("query_display", "answer_display", "status", "created_at_display")


class MessageInline(admin.TabularInline):
    model = Message
    fields = MESSAGE_INLINE_FIELDS
    readonly_fields = MESSAGE_INLINE_FIELDS
    ordering = ["created_at"]
    extra = 0
    can_delete = False
    show_change_link = True
    empty_value_display = EMPTY
    created_at_display = moment_column("created_at")

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    @admin.display(description="query")
    def query_display(self, message: Message) -> str:
        return _short(message.query, 80)

    @admin.display(description="answer")
    def answer_display(self, message: Message) -> str:
        return _short(message.answer, 120)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "app", "end_user", "name", "created_at", "updated_at"]
    list_filter = ["app"]
    search_fields = ["id", "end_user", "name"]
    list_select_related = ["app"]
    ordering = ["-updated_at"]
    empty_value_display = EMPTY
    fields = ["id", "app", "end_user", "name", "inputs", "created_at", "updated_at"]
    readonly_fields = ["id", "app", "end_user", "inputs", "created_at", "updated_at"]
    inlines = [MessageInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class ProviderFilter(admin.SimpleListFilter):
    """The provider kinds, without a SELECT DISTINCT over every message to find them."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(ProviderKind.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        return queryset.filter(provider=self.value()) if self.value() else queryset


MESSAGE_FILE_FIELDS = ("position", "kind", "transfer_method", "url", "stored_file_link")


class MessageFileInline(admin.TabularInline):
    """The files sent with the question: what the model was shown."""

    model = MessageFile
    fields = MESSAGE_FILE_FIELDS
    readonly_fields = MESSAGE_FILE_FIELDS
    extra = 0
    can_delete = False
    empty_value_display = EMPTY

    def has_add_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    @admin.display(description="stored file")
    def stored_file_link(self, attachment: MessageFile) -> SafeString | str:
        stored = attachment.stored_file
        if stored is None:
            return EMPTY
        url = reverse("admin:files_storedfile_change", args=[stored.pk])
        return format_html('<a href="{}">{}</a> ({} bytes)', url, stored.filename, stored.size)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "app",
        "conversation",
        "end_user",
        "query_display",
        "status",
        "completion_tokens",
        "latency_display",
        "first_token_display",
        "created_at_display",
    ]
    list_filter = ["status", "app", ProviderFilter]
    search_fields = ["id", "end_user", "query"]
    list_select_related = ["app", "conversation"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    # A COUNT(*) over every message on each page load is the slow part of a big changelist.
    show_full_result_count = False
    empty_value_display = EMPTY
    fieldsets = [
        (None, {"fields": ["id", "app", "conversation", "end_user", "task_link", "status"]}),
        ("Question and answer", {"fields": ["inputs", "query", "answer", "error"]}),
        (
            "Model and timings",
            {
                "fields": [
                    "provider",
                    "model_name",
                    "prompt_tokens",
                    "completion_tokens",
                    "latency_display",
                    "first_token_display",
                    "created_at_display",
                    "updated_at_display",
                ]
            },
        ),
        (
            "Cost",
            {
                "fields": [
                    "total_price",
                    "currency",
                    "prompt_unit_price",
                    "completion_unit_price",
                    "price_unit",
                ]
            },
        ),
        ("Feedback", {"fields": ["feedback_display", "suggested_questions"]}),
    ]
    readonly_fields = flatten_fieldsets(fieldsets)
    inlines = [MessageFileInline]
    created_at_display = moment_column("created_at")
    updated_at_display = moment_column("updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    @admin.display(description="query", ordering="query")
    def query_display(self, message: Message) -> str:
        return _short(message.query)

    @admin.display(description="latency", ordering="latency_s")
    def latency_display(self, message: Message) -> str:
        return seconds_display(message.latency_s)

    @admin.display(description="first token", ordering="first_token_s")
    def first_token_display(self, message: Message) -> str:
        return seconds_display(message.first_token_s)

    @admin.display(description="task")
    def task_link(self, message: Message) -> SafeString | str:
        task = message.task
        if task is None:
            return EMPTY
        url = reverse("admin:scheduling_task_change", args=[task.pk])
        return format_html('<a href="{}">{}</a> ({})', url, task.pk, task.get_status_display())

    @admin.display(description="feedback")
    def feedback_display(self, message: Message) -> str:
        try:
            feedback: Feedback = message.feedback
        except Feedback.DoesNotExist:
            return EMPTY
        comment = f": {feedback.content}" if feedback.content else ""
        return f"{feedback.get_rating_display()}{comment}"
