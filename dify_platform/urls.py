from django.contrib import admin
from django.urls import include, path

from apps.core.views import not_found, server_error

urlpatterns = [
    path("admin/", admin.site.urls),
    path("chat/", include("apps.interface.page_urls")),
    path("", include("apps.interface.answer_urls")),
    path("", include("apps.interface.conversation_urls")),
    path("", include("apps.interface.file_urls")),
    # After Dify's /v1/files/upload: OpenAI's /v1/files/{id} would take that path otherwise.
    path("", include("apps.interface.openai_urls")),
    path("", include("apps.interface.app_urls")),
    path("", include("apps.operations.urls")),
]

handler404 = not_found
handler500 = server_error
