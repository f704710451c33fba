"""Apps and their API keys for the operator.

A key's clear text exists only in the one response that creates it; the admin never shows a digest.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from apps.applications.models import ApiKey, App
from apps.applications.services import (
    api_key_create,
    app_share_code_rotate,
)

EMPTY = "—"
API_KEY_READ_FIELDS = ("prefix", "name", "max_priority", "created_at", "last_used_at", "revoked_at")


class AppForm(forms.ModelForm):
    """The admin supplies the model and the fields (AppAdmin.fieldsets)."""

    web_share_code_rotate = forms.BooleanField(
        required=False,
        label="Rotate the share code",
        help_text="A new chat link: the old one, and every browser session it gave, stop working.",
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        # An emptied JSON box means "none" (the field's default), not a NULL the column refuses.
        for name in self.fields:
            if name in self.declared_fields:
                continue  # the form's own fields (the share code's rotation)
            model_field = App._meta.get_field(name)
            if (
                isinstance(model_field, models.JSONField)
                and self.cleaned_data.get(name, []) is None
            ):
                self.cleaned_data[name] = model_field.get_default()
        return self.cleaned_data


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = API_KEY_READ_FIELDS
    readonly_fields = API_KEY_READ_FIELDS
    ordering = ["-created_at"]
    extra = 0
    can_delete = False
    show_change_link = True
    empty_value_display = EMPTY

    def has_add_permission(self, request: HttpRequest, obj: App | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: App | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: App | None = None) -> bool:
        return False


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    form = AppForm
    # A privacy policy's address typed without a scheme is an https one (Django 6's default).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    empty_value_display = EMPTY
    list_display = [
        "name",
        "mode",
        "enabled",
        "default_priority",
        "created_at",
    ]
    list_filter = ["mode", "enabled"]
    search_fields = ["name"]
    readonly_fields = [
        "id",
        "settings_version",
        "created_at",
        "updated_at",
        "web_chat_link",
    ]
    fieldsets = [
        (
            "Identity",
            {
                "fields": [
                    "id",
                    "name",
                    "description",
                    "mode",
                    "enabled",
                    "author_name",
                    "tags",
                    "settings_version",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
        (
            "Web chat",
            {
                "description": "The chat page for end users, at /chat/<share code>. Each browser "
                "gets its own end-user session; the app's API keys never reach a browser.",
                "fields": [
                    "web_chat_enabled",
                    "web_chat_link",
                    "web_share_code_rotate",
                    "web_chat_private",
                ],
            },
        ),
        (
            "Web app presentation",
            {
                "description": "What Dify's /v1/site reports to clients that draw the app (its "
                "title and description are the app's name and description).",
                "classes": ["collapse"],
                "fields": [
                    "site_icon",
                    "site_icon_background",
                    "site_chat_color_theme",
                    "site_chat_color_theme_inverted",
                    "site_use_icon_as_answer_icon",
                    "site_input_placeholder",
                    "site_default_language",
                    "site_copyright",
                    "site_privacy_policy",
                    "site_custom_disclaimer",
                ],
            },
        ),
        (
            "Prompt and inputs form",
            {
                "fields": [
                    "system_prompt",
                    "opening_statement",
                    "suggested_questions",
                    "user_input_form",
                    "suggested_questions_after_answer",
                ]
            },
        ),
        (
            "Files and vision",
            {
                "description": "Files with chat and completion requests (Dify's file upload "
                "feature, reported by /v1/parameters). A file the app's model cannot take is "
                "refused with a 400, never dropped.",
                "fields": [
                    "file_upload_enabled",
                    "file_upload_images",
                    "file_upload_documents",
                    "file_upload_extensions",
                    "file_upload_local",
                    "file_upload_remote",
                    "file_upload_number_limit",
                    "file_image_size_limit_mb",
                    "file_document_size_limit_mb",
                    "vision_enabled",
                    "image_detail",
                ],
            },
        ),
        ("Generation parameters", {"fields": ["max_tokens", "temperature", "top_p", "stop"]}),
        ("Scheduling", {"fields": ["default_priority", "max_attempts"]}),
        (
            "Moderation",
            {
                "description": "One keyword or pattern per line. Keywords ignore case; patterns "
                "are regular expressions (case-sensitive unless they start with (?i)).",
                "fields": [
                    "moderation_input_keywords",
                    "moderation_input_patterns",
                    "moderation_input_reply",
                    "moderation_output_keywords",
                    "moderation_output_patterns",
                    "moderation_output_replacement",
                ],
            },
        ),
        (
            "Prices",
            {
                "description": "Per token unit: price_unit 0.000001 means prices per 1M tokens.",
                "fields": ["prompt_unit_price", "completion_unit_price", "price_unit", "currency"],
            },
        ),
        (
            "Input protections",
            {
                "description": "Empty: the platform default; 0: no limit. A key may set its own "
                "rate (on the key's page).",
                "fields": [
                    "rate_limit_per_s",
                    "rate_limit_burst",
                    "user_rate_limit_per_s",
                    "user_rate_limit_burst",
                    "max_active_requests",
                    "cache_enabled",
                    "cache_ttl_s",
                ],
            },
        ),
    ]
    inlines = [ApiKeyInline]

    @admin.display(description="Chat link")
    def web_chat_link(self, obj: App) -> str:
        if obj.pk is None:
            return EMPTY
        return f"/chat/{obj.web_share_code}" + ("" if obj.web_chat_enabled else " (not enabled)")

    def save_model(
        self, request: HttpRequest, obj: App, form: forms.ModelForm, change: bool
    ) -> None:
        data = form.cleaned_data
        if data.get("web_share_code_rotate"):
            app_share_code_rotate(obj)
        bump = change and form.has_changed()
        if bump:
            # In SQL, so two operators saving at once both count.
            obj.settings_version = F("settings_version") + 1
        super().save_model(request, obj, form, change)
        if bump:
            obj.refresh_from_db(fields=["settings_version"])


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["app", "name", "max_priority"]


class ApiKeyChangeForm(forms.ModelForm):
    revoke = forms.BooleanField(
        required=False,
        label="Revoked",
        help_text="A revoked key stops working at once, for good: make a new key instead.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "max_priority", "rate_limit_per_s", "rate_limit_burst"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        revoked = self.instance.revoked_at is not None
        self.fields["revoke"].initial = revoked
        self.fields["revoke"].disabled = revoked


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "app",
        "name",
        "max_priority",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = [RevokedFilter, "max_priority", "app"]
    search_fields = ["prefix", "name", "app__name"]
    list_select_related = ["app"]
    ordering = ["-created_at"]
    empty_value_display = EMPTY
    actions = ["revoke_selected"]
    add_form = ApiKeyAddForm
    form = ApiKeyChangeForm

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return [(None, {"fields": ["app", "name", "max_priority"]})]
        return [
            (None, {"fields": ["prefix", "app", "name", "max_priority", "revoke"]}),
            ("Rate limit", {"fields": ["rate_limit_per_s", "rate_limit_burst"]}),
            ("Use", {"fields": ["created_at", "last_used_at", "revoked_at"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return ["prefix", "app", "created_at", "last_used_at", "revoked_at"]

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            if form.cleaned_data.get("revoke") and obj.revoked_at is None:
                obj.revoked_at = timezone.now()
            super().save_model(request, obj, form, change)
            return
        created, clear_key = api_key_create(
            app=obj.app, name=obj.name, max_priority=obj.max_priority
        )
        # The admin goes on with `obj` (log entry, redirect): make it the row just created.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db
        self.message_user(
            request,
            f"The new key is {clear_key} — copy it now: it is shown only this once and "
            "cannot be recovered.",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        active = list(queryset.filter(revoked_at__isnull=True))
        now = timezone.now()
        revoked = ApiKey.objects.filter(
            id__in=[key.id for key in active], revoked_at__isnull=True
        ).update(revoked_at=now, updated_at=now)
        for key in active:
            self.log_change(request, key, "Revoked.")
        already = queryset.count() - len(active)
        note = f" ({already} already revoked)" if already else ""
        self.message_user(
            request, f"Revoked {revoked} key{'s' if revoked != 1 else ''}{note}.", messages.SUCCESS
        )
