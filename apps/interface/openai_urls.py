from django.urls import path

from apps.interface import openai_apis as apis
from apps.interface import openai_batch_apis as batch_apis

# OpenAI's API (its errors in OpenAI's envelope: apps.gateway.openai_errors.speaks_openai).
urlpatterns = [
    path("v1/chat/completions", apis.chat_completions_create, name="openai-chat-completions"),
    path("v1/models", apis.models_list, name="openai-models"),
    # Model names may hold slashes (`meta-llama/Llama-3.1-8B-Instruct`).
    path("v1/models/<path:model>", apis.model_get, name="openai-model"),
    # Files for batches (Dify's /v1/files/upload and /v1/files/{id}/preview are routed before).
    path("v1/files", batch_apis.files, name="openai-files"),
    path("v1/files/<str:file_id>", batch_apis.file, name="openai-file"),
    path("v1/files/<str:file_id>/content", batch_apis.file_content, name="openai-file-content"),
    path("v1/batches", batch_apis.batches, name="openai-batches"),
    path("v1/batches/<str:batch_id>", batch_apis.batch_retrieve, name="openai-batch"),
    path(
        "v1/batches/<str:batch_id>/cancel", batch_apis.batch_cancel_view, name="openai-batch-cancel"
    ),
]
