from django.urls import path

from apps.interface import conversation_apis as apis

# Ids in paths are taken as text and checked by the views, so a malformed one is the same clean
# 404 ("Conversation Not Exists.") as an unknown one.
urlpatterns = [
    path("v1/conversations", apis.conversation_list, name="conversations"),
    path("v1/conversations/<str:conversation_id>", apis.conversation_delete, name="conversation"),
    path(
        "v1/conversations/<str:conversation_id>/name",
        apis.conversation_rename,
        name="conversation-name",
    ),
    path("v1/messages", apis.message_list, name="messages"),
    path(
        "v1/messages/<str:message_id>/feedbacks",
        apis.message_feedback,
        name="message-feedbacks",
    ),
    path("v1/parameters", apis.app_parameters_get, name="parameters"),
    path("v1/info", apis.app_info, name="info"),
    path("v1/meta", apis.app_meta, name="meta"),
]
