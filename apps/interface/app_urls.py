from django.urls import path

from apps.interface import app_apis as apis

# Ids in paths are taken as text and checked by the views: a malformed one is the same 404 as an
# unknown one.
urlpatterns = [
    path("v1/messages/<str:message_id>/suggested", apis.message_suggested, name="suggested"),
    path("v1/app/feedbacks", apis.app_feedbacks, name="app-feedbacks"),
    path("v1/site", apis.site, name="site"),
    path("v1/end-users/<str:end_user_id>", apis.end_user_detail, name="end-user"),
]
