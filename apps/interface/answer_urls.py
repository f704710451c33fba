from django.urls import path
from drf_spectacular.views import SpectacularSwaggerView

from apps.interface import answer_apis as apis
from apps.interface import docs

urlpatterns = [
    path("v1/chat-messages", apis.chat_messages_create, name="chat-messages"),
    path("v1/completion-messages", apis.completion_messages_create, name="completion-messages"),
    path("api/v1/ask", apis.ask_create, name="ask"),
    path("v1/chat-messages/<uuid:task_id>/stop", apis.answer_stop_create, name="chat-stop"),
    path(
        "v1/completion-messages/<uuid:task_id>/stop",
        apis.answer_stop_create,
        name="completion-stop",
    ),
    path("v1/chat-messages/<uuid:task_id>/events", apis.answer_events, name="chat-events"),
    path(
        "v1/completion-messages/<uuid:task_id>/events", apis.answer_events, name="completion-events"
    ),
    path("api/schema/", docs.OpenApiDocumentApi.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/docs/assets/<str:name>", docs.swagger_asset, name="api-docs-asset"),
]
