"""Serving the OpenAPI document (/api/schema/, YAML or JSON) and Swagger UI (/api/docs/) with its
assets from the drf-spectacular-sidecar package: no CDN, and daphne serves no static files."""

import mimetypes
from functools import cache
from pathlib import Path
from typing import Any

import drf_spectacular_sidecar
from django.http import FileResponse, Http404, HttpRequest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from apps.interface.openapi import documented_patterns

SWAGGER_DIST = (
    Path(drf_spectacular_sidecar.__file__).resolve().parent
    / "static"
    / "drf_spectacular_sidecar"
    / "swagger-ui-dist"
)
# The files the page loads: plain names only, so no path can leave the folder.
ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
    }
)


@cache
def openapi_document() -> dict[str, Any]:
    """Generated once per process: the document changes only with the code."""
    generator = SchemaGenerator(patterns=documented_patterns())
    document: dict[str, Any] = generator.get_schema(request=None, public=True)
    return document


class OpenApiDocumentApi(SpectacularAPIView):
    """YAML by default; JSON with `?format=json` or `Accept: application/vnd.oai.openapi+json`."""

    def get_format_suffix(self, **kwargs: Any) -> str | None:
        # The platform turns DRF's URL_FORMAT_OVERRIDE off; this view keeps `?format=`.
        return self.request.GET.get("format") or None

    def _get_schema_response(self, request: Request) -> Response:
        return Response(
            data=openapi_document(),
            headers={"Content-Disposition": 'inline; filename="dify-platform-openapi"'},
        )


def swagger_asset(request: HttpRequest, name: str) -> FileResponse:
    if name not in ASSETS:
        raise Http404(name)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse((SWAGGER_DIST / name).open("rb"), content_type=content_type)
    response["Cache-Control"] = "public, max-age=86400"
    return response
