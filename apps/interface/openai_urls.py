from django.urls import path

from apps.interface import openai_apis as apis

# OpenAI's API (its errors in OpenAI's envelope: apps.gateway.openai_errors.speaks_openai).
urlpatterns = [
    path("v1/chat/completions", apis.chat_completions_create, name="openai-chat-completions"),
    path("v1/models", apis.models_list, name="openai-models"),
    # Model names may hold slashes (`meta-llama/Llama-3.1-8B-Instruct`).
    path("v1/models/<path:model>", apis.model_get, name="openai-model"),
]
