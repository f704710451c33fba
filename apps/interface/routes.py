"""Every route of the API, in one list: the URLconf is built from it (apps.interface.urls), the
OpenAPI document describes each of its routes (apps.interface.openapi), and a request refused
before its view runs is answered in the envelope of the API its route speaks (each view
declares which, apps.interface.views; the edge finds the view through the URLconf)."""

from dataclasses import dataclass

from apps.interface import answer_apis, app_apis, conversation_apis, file_apis, openai_apis
from apps.interface import openai_batch_apis as batch_apis
from apps.interface.views import AsyncView


@dataclass(frozen=True)
class Route:
    path: str
    view: AsyncView
    name: str  # the URL's name, and the OpenAPI document's key for it


# In matching order. Ids in paths are taken as text where the view checks them, so a malformed
# one is the same 404 as an unknown one.
API_ROUTES: tuple[Route, ...] = (
    # Dify's answers.
    Route("v1/chat-messages", answer_apis.chat_messages_create, "chat-messages"),
    Route("v1/completion-messages", answer_apis.completion_messages_create, "completion-messages"),
    Route("api/v1/ask", answer_apis.ask_create, "ask"),
    Route("v1/chat-messages/<uuid:task_id>/stop", answer_apis.answer_stop_create, "chat-stop"),
    Route(
        "v1/completion-messages/<uuid:task_id>/stop",
        answer_apis.answer_stop_create,
        "completion-stop",
    ),
    Route("v1/chat-messages/<uuid:task_id>/events", answer_apis.answer_events, "chat-events"),
    Route(
        "v1/completion-messages/<uuid:task_id>/events",
        answer_apis.answer_events,
        "completion-events",
    ),
    # Dify's conversations and messages.
    Route("v1/conversations", conversation_apis.conversation_list, "conversations"),
    Route(
        "v1/conversations/<str:conversation_id>",
        conversation_apis.conversation_delete,
        "conversation",
    ),
    Route(
        "v1/conversations/<str:conversation_id>/name",
        conversation_apis.conversation_rename,
        "conversation-name",
    ),
    Route("v1/messages", conversation_apis.message_list, "messages"),
    Route(
        "v1/messages/<str:message_id>/feedbacks",
        conversation_apis.message_feedback,
        "message-feedbacks",
    ),
    Route("v1/parameters", conversation_apis.app_parameters_get, "parameters"),
    Route("v1/info", conversation_apis.app_info, "info"),
    Route("v1/meta", conversation_apis.app_meta, "meta"),
    # Dify's files: before OpenAI's /v1/files/{id}, which would take these paths otherwise.
    Route("v1/files/upload", file_apis.file_upload, "files-upload"),
    Route("v1/files/<str:file_id>/preview", file_apis.file_preview, "file-preview"),
    # OpenAI's.
    Route("v1/chat/completions", openai_apis.chat_completions_create, "openai-chat-completions"),
    Route("v1/models", openai_apis.models_list, "openai-models"),
    # Model names may hold slashes (`meta-llama/Llama-3.1-8B-Instruct`).
    Route("v1/models/<path:model>", openai_apis.model_get, "openai-model"),
    Route("v1/files", batch_apis.files, "openai-files"),
    Route("v1/files/<str:file_id>", batch_apis.file, "openai-file"),
    Route("v1/files/<str:file_id>/content", batch_apis.file_content, "openai-file-content"),
    Route("v1/batches", batch_apis.batches, "openai-batches"),
    Route("v1/batches/<str:batch_id>", batch_apis.batch_retrieve, "openai-batch"),
    Route("v1/batches/<str:batch_id>/cancel", batch_apis.batch_cancel_view, "openai-batch-cancel"),
    # Dify's app-facing routes.
    Route("v1/messages/<str:message_id>/suggested", app_apis.message_suggested, "suggested"),
    Route("v1/app/feedbacks", app_apis.app_feedbacks, "app-feedbacks"),
    Route("v1/site", app_apis.site, "site"),
    Route("v1/end-users/<str:end_user_id>", app_apis.end_user_detail, "end-user"),
)
