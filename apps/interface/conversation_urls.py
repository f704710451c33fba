from django.urls import path

from apps.interface import conversation_apis as apis

# Ids in paths are taken as text and checked by the views, so a malformed one is the same clean
# 404 ("Conversation Not Exists.") as an unknown one.
urlpatterns = [
    path("v1/conversations", apis.ConversationListApi.as_view(), name="conversations"),
    path(
        "v1/conversations/<str:conversation_id>",
        apis.ConversationDeleteApi.as_view(),
        name="conversation",
    ),
    path(
        "v1/conversations/<str:conversation_id>/name",
        apis.ConversationRenameApi.as_view(),
        name="conversation-name",
    ),
    path("v1/messages", apis.MessageListApi.as_view(), name="messages"),
    path(
        "v1/messages/<str:message_id>/feedbacks",
        apis.MessageFeedbackApi.as_view(),
        name="message-feedbacks",
    ),
    path("v1/parameters", apis.AppParametersApi.as_view(), name="parameters"),
    path("v1/info", apis.AppInfoApi.as_view(), name="info"),
    path("v1/meta", apis.AppMetaApi.as_view(), name="meta"),
]
