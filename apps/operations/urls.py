from django.urls import path

from apps.operations import apis, scrape

urlpatterns = [
    path("metrics", scrape.metrics, name="metrics"),
    path("healthz", apis.healthz, name="healthz"),
    path("readyz", apis.readyz, name="readyz"),
]
