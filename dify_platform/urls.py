from django.contrib import admin
from django.urls import include, path

from apps.core.views import not_found, server_error

urlpatterns = [
    path("admin/", admin.site.urls),
    path("chat/", include("apps.interface.page_urls")),
    path("", include("apps.interface.urls")),
    path("", include("apps.operations.urls")),
]

handler404 = not_found
handler500 = server_error
