"""The queue dashboard page inside the admin, and the JSON it polls."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.cache import never_cache

from apps.core.errors import ApiError, Forbidden, MethodNotAllowed, Unauthorized
from apps.scheduling.status import dashboard_snapshot

TASK_ID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


class TaskDashboardMixin(admin.ModelAdmin):
    def get_urls(self) -> list[URLPattern]:
        # Before the defaults: their `<path:object_id>/` would take "dashboard/" for an id.
        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="scheduling_task_dashboard",
            ),
            path(
                "dashboard/data/",
                never_cache(self.dashboard_data_view),
                name="scheduling_task_dashboard_data",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue dashboard",
            "opts": self.opts,
            "snapshot": dashboard_snapshot(),
            "data_url": reverse("admin:scheduling_task_dashboard_data"),
            "changelist_url": reverse("admin:scheduling_task_changelist"),
            "task_url": reverse("admin:scheduling_task_change", args=[TASK_ID_PLACEHOLDER]),
            "task_id_placeholder": TASK_ID_PLACEHOLDER,
        }
        return TemplateResponse(request, "admin/scheduling/dashboard.html", context)

    def dashboard_data_view(self, request: HttpRequest) -> JsonResponse:
        """The dashboard's numbers, polled by its page. Errors are envelopes, not login pages:
        the page tells the operator instead of parsing HTML."""
        error: ApiError | None = None
        if request.method != "GET":
            error = MethodNotAllowed()
        elif not self.admin_site.has_permission(request):
            error = Unauthorized("Sign in to the admin to see the dashboard.")
        elif not self.has_view_permission(request):
            error = Forbidden("You may not view tasks.")
        if error is not None:
            return JsonResponse(error.envelope(), status=error.status)
        return JsonResponse(dashboard_snapshot())
