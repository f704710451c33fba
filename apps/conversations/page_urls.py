from django.urls import path

from apps.conversations import pages

urlpatterns = [
    path("", pages.chat_page, name="chat-page"),
    path("static/<str:name>", pages.chat_asset, name="chat-asset"),
]
