from django.urls import path

from apps.interface import file_apis as apis

# A file id is taken as text and checked by the view: a malformed one is the same 404 as an
# unknown one.
urlpatterns = [
    path("v1/files/upload", apis.file_upload, name="files-upload"),
    path("v1/files/<str:file_id>/preview", apis.file_preview, name="file-preview"),
]
