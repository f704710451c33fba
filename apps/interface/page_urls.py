from django.urls import path

from apps.interface import pages

urlpatterns = [
    path("", pages.chat_index, name="chat-index"),
    path("login/", pages.ChatLoginView.as_view(), name="chat-login"),
    path("static/<str:name>", pages.chat_asset, name="chat-asset"),
    path("<str:share_code>", pages.chat_page, name="chat-page"),
]
