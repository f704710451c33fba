"""The chat page: one HTML page whose script talks to /v1 and /ws/v1/chat with an app key.

The page holds the key in the browser (localStorage), so it is served with a strict Content
Security Policy: only its own script and style run, and it connects only to this host.
"""

import re
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.static import serve

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The page's own files only: plain names, no folders, so no path can leave static/chat/.
ASSET_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(js|css|svg)$")


@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    response = render(request, "chat/index.html")
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
def chat_asset(request: HttpRequest, name: str) -> HttpResponseBase:
    """The page's script and style, served by the platform itself: daphne serves no static files
    and DEBUG=False Django neither, yet the page must work with nothing else in front."""
    if not ASSET_NAME.match(name):
        raise Http404
    response = serve(request, name, document_root=str(Path(settings.STATICFILES_DIRS[0]) / "chat"))
    response["Cache-Control"] = "no-cache"  # revalidated (Last-Modified): a deploy shows at once
    return response
