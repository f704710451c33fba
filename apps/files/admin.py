"""Stored files for the operator: read-only, and deleted through the service (which removes the
content from its backend as well as the row)."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.files.models import StoredFile
from apps.files.services import file_delete

FIELDS = (
    "id",
    "app",
    "end_user",
    "purpose",
    "filename",
    "mime_type",
    "size",
    "sha256",
    "backend",
    "storage_key",
    "created_at",
    "expires_at",
)


@admin.register(StoredFile)
class StoredFileAdmin(admin.ModelAdmin):
    list_display = ["filename", "app", "end_user", "purpose", "size", "mime_type", "created_at"]
    list_filter = ["purpose", "backend", "app"]
    search_fields = ["filename", "end_user", "=id"]
    list_select_related = ["app"]
    ordering = ["-created_at"]
    fields = FIELDS
    readonly_fields = FIELDS
    empty_value_display = "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StoredFile | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: StoredFile) -> None:
        file_delete(file=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[StoredFile]) -> None:
        for file in queryset:
            file_delete(file=file)
