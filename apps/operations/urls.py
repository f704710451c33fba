from django.urls import path

from apps.operations import apis

urlpatterns = [
    path("healthz", apis.healthz, name="healthz"),
    path("readyz", apis.readyz, name="readyz"),
]
