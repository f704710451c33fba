"""The chat page of an app, `/chat/<share code>`: one HTML page whose script talks to /v1 and
/ws/v1/chat as the browser's own end user.

The operator turns an app's web chat on (App.web_chat_enabled) and shares the link; the page
issues the browser a signed end-user session (apps.gateway.sessions) and never sees an API key.
A private app (App.web_chat_private) first asks for a sign-in; the account is then the end user.
The page is served with a strict Content Security Policy: only its own script and style run, and
it connects only to this host.
"""

import re
from pathlib import Path

from django.conf import settings
from django.contrib.auth.views import LoginView, redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.static import serve

from apps.applications.models import App
from apps.applications.services import web_session_key
from apps.gateway.sessions import cookie_name, session_cookie_set, session_new, session_read

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The page's own files only: plain names, no folders, so no path can leave static/chat/.
ASSET_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(js|css|svg)$")


def _strict(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["Referrer-Policy"] = "no-referrer"  # the share code stays out of other sites' logs
    response["Cache-Control"] = "no-store"
    return response


def _unavailable(request: HttpRequest) -> HttpResponse:
    return _strict(render(request, "chat/unavailable.html", status=404))


@require_GET
def chat_index(request: HttpRequest) -> HttpResponse:
    """No share code: nothing to chat with (each app's chat has its own link)."""
    return _unavailable(request)


@require_GET
def chat_page(request: HttpRequest, share_code: str) -> HttpResponseBase:
    app = App.objects.filter(web_share_code=share_code, web_chat_enabled=True, enabled=True).first()
    if app is None:
        return _unavailable(request)
    account = None
    if app.web_chat_private:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url=reverse("chat-login"))
        account = request.user
    web_session_key(app)  # the key its sessions' requests run under, made on the first visit
    session = session_read(app, request.COOKIES.get(cookie_name(app)))
    if session is None or (account is not None and session.account_id != account.pk):
        session = session_new(app, account)
    label = account.get_username() if account is not None else "Guest"
    response = _strict(
        render(
            request,
            "chat/index.html",
            {"app": app, "share_code": app.web_share_code, "user_label": label},
        )
    )
    session_cookie_set(response, request, app, session)  # a visit renews the session
    return response


class ChatLoginView(LoginView):
    """Sign-in for private chats: any active account, staff or not."""

    template_name = "chat/login.html"
    redirect_authenticated_user = True


@require_GET
def chat_asset(request: HttpRequest, name: str) -> HttpResponseBase:
    """The page's script and style, served by the platform itself: daphne serves no static files
    and DEBUG=False Django neither, yet the page must work with nothing else in front."""
    if not ASSET_NAME.match(name):
        raise Http404
    response = serve(request, name, document_root=str(Path(settings.STATICFILES_DIRS[0]) / "chat"))
    response["Cache-Control"] = "no-cache"  # revalidated (Last-Modified): a deploy shows at once
    return response
