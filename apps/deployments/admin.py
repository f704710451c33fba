"""Deployments for superusers (each holds a credential), and the deployments that serve an app on
the app's own page (staff who may edit apps choose among the deployments, never make one).

A deployment's page shows it live: in flight against capacity, waiting by priority and by app,
cooldown, recent failures and tokens in the last minute (apps.scheduling.coordination.capacity).
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from apps.applications.admin import AppAdmin
from apps.applications.models import App
from apps.deployments.models import AppDeployment, Deployment
from apps.deployments.services import deployment_key_set
from apps.scheduling.coordination.capacity import DeploymentLoad, deployment_load

EMPTY = "—"
STATE_LABELS = {"closed": "serving", "open": "cooling down", "half": "probing (half open)"}


class DeploymentForm(forms.ModelForm):
    """The key is write-only: typed once, sealed, and from then on shown as its first
    characters. A new server address drops the stored key unless a key is typed with it: a key
    goes only to the server it was given for."""

    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="API key",
        help_text="Stored encrypted. Leave empty to keep the current key (for the same server).",
    )
    api_key_clear = forms.BooleanField(required=False, label="Remove the API key")


def _superuser(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_superuser)


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    form = DeploymentForm
    empty_value_display = EMPTY
    list_display = [
        "name",
        "provider",
        "model",
        "base_url",
        "max_concurrency",
        "in_flight",
        "waiting",
        "state",
        "enabled",
    ]
    list_filter = ["provider", "enabled"]
    search_fields = ["name", "model", "base_url"]
    readonly_fields = ["api_key_hint", "load", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "provider", "base_url", "model", "config"]}),
        ("Credential", {"fields": ["api_key", "api_key_hint", "api_key_clear", "api_key_env"]}),
        (
            "Capacity",
            {
                "fields": [
                    "max_concurrency",
                    "reserved_for_high",
                    "rpm_limit",
                    "tpm_limit",
                    "context_window",
                    "vision",
                ]
            },
        ),
        ("Now", {"fields": ["load", "created_at", "updated_at"]}),
    ]

    # A deployment holds a credential: superusers only, whatever the staff's permissions.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return _superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request)

    def save_model(
        self, request: HttpRequest, obj: Deployment, form: forms.ModelForm, change: bool
    ) -> None:
        data = form.cleaned_data
        if data.get("api_key_clear"):
            deployment_key_set(obj, "")
        elif data.get("api_key"):
            deployment_key_set(obj, data["api_key"])
        elif change and "base_url" in form.changed_data and obj.api_key_sealed:
            deployment_key_set(obj, "")
            self.message_user(
                request,
                "The server's address changed, so its stored key was removed: type the key "
                "for the new server.",
                messages.WARNING,
            )
        super().save_model(request, obj, form, change)

    def _load(self, obj: Deployment) -> DeploymentLoad | None:
        try:
            return deployment_load(obj.name)
        except Exception:
            return None  # Redis unreachable: the page still shows the settings

    @admin.display(description="in flight")
    def in_flight(self, obj: Deployment) -> str:
        load = self._load(obj)
        return f"{load.in_flight} / {obj.max_concurrency}" if load else EMPTY

    @admin.display(description="waiting")
    def waiting(self, obj: Deployment) -> str:
        load = self._load(obj)
        return str(sum(load.waiting.values())) if load else EMPTY

    @admin.display(description="state")
    def state(self, obj: Deployment) -> str:
        load = self._load(obj)
        if load is None:
            return EMPTY
        label = STATE_LABELS.get(load.state, load.state)
        return f"{label} ({load.cooldown_left_s:.0f} s)" if load.state == "open" else label

    @admin.display(description="Load now")
    def load(self, obj: Deployment) -> str:
        load = self._load(obj) if obj.pk else None
        if load is None:
            return EMPTY
        names = dict(App.objects.filter(id__in=_app_ids(load)).values_list("id", "name"))
        apps = sorted({*load.waiting_by_app, *load.in_flight_by_app})
        failures = format_html_join(
            "",
            "<li>{}: {}</li>",
            (
                (datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S"), why)
                for at, why in load.recent_failures
            ),
        )
        per_app = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    names.get(_uuid_or_none(app), app),
                    load.in_flight_by_app.get(app, 0),
                    load.waiting_by_app.get(app, 0),
                )
                for app in apps
            ),
        )
        waiting = ", ".join(f"{priority} {count}" for priority, count in load.waiting.items())
        state = STATE_LABELS.get(load.state, load.state)
        if load.state == "open":
            state += f", {load.cooldown_left_s:.1f} s left ({load.cooldown_reason})"
        return format_html(
            "<p>In flight {} of {}; waiting: {}. State: {}; cooled down {} times. Tokens in "
            "the last minute: {}.</p><table><tr><th>app</th><th>in flight</th><th>waiting</th>"
            "</tr>{}</table><p>Recent failures:</p><ul>{}</ul>",
            load.in_flight,
            obj.max_concurrency,
            waiting,
            state,
            load.cooldowns,
            load.tokens_last_minute,
            per_app,
            failures or format_html("<li>{}</li>", "none"),
        )


def _uuid_or_none(value: str) -> Any:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _app_ids(load: DeploymentLoad) -> list[Any]:
    ids = (_uuid_or_none(app) for app in {*load.waiting_by_app, *load.in_flight_by_app})
    return [app_id for app_id in ids if app_id is not None]


class AppDeploymentInline(admin.TabularInline):
    """Which deployments serve the app: staff choose among those superusers made."""

    model = AppDeployment
    fields = ["deployment", "role", "position", "weight"]
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[AppDeployment]:
        return super().get_queryset(request).select_related("deployment")


admin.site.unregister(App)


@admin.register(App)
class ServedAppAdmin(AppAdmin):
    """The app's page, with the deployments that serve it."""

    inlines = [*AppAdmin.inlines, AppDeploymentInline]
    list_display = [*AppAdmin.list_display[:2], "served_by", *AppAdmin.list_display[2:]]

    def get_queryset(self, request: HttpRequest) -> QuerySet[App]:
        return super().get_queryset(request).prefetch_related("deployment_links__deployment")

    @admin.display(description="deployments")
    def served_by(self, obj: App) -> str:
        links = obj.deployment_links.all()
        return ", ".join(f"{link.deployment.name} ({link.role})" for link in links) or (
            "builtin (default)"
        )
