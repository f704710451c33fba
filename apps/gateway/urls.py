from django.urls import path

from apps.gateway import apis

urlpatterns = [
    path("v1/chat-messages", apis.chat_messages_create, name="chat-messages"),
    path("v1/completion-messages", apis.completion_messages_create, name="completion-messages"),
    path("api/v1/ask", apis.ask_create, name="ask"),
]
