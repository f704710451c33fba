from django.urls import path
from drf_spectacular.views import SpectacularSwaggerView

from apps.interface import docs
from apps.interface.routes import API_ROUTES

urlpatterns = [
    *(path(route.path, route.view, name=route.name) for route in API_ROUTES),
    path("api/schema/", docs.OpenApiDocumentApi.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/docs/assets/<str:name>", docs.swagger_asset, name="api-docs-asset"),
]
