"""End-user sessions of an app's web chat: the browser's identity, issued by the server.

Dify's model: an app's API key is a server-side secret; its web app has a public share code and
gives each browser an end-user identity of its own. Here the chat page (`/chat/<share code>`)
issues a signed, HttpOnly cookie per app naming that browser's end user (`web-...`), or, for a
private app, the signed-in account (`account-<id>`). The page's REST calls send the share code in
`X-App-Code` and the browser adds the cookie; its WebSocket names the code in `?app_code=`. The
end user then comes from the session alone: a `user` in a body, a query string or a frame is
replaced by it, so nobody can act as someone else by typing another name.

Requests run under the app's web-session key (ApiKey.for_web_sessions): its priority ceiling and
rate limit are the browsers'. Forgery across sites is closed three ways: the cookie is
SameSite=Strict, the custom header cannot be sent cross-site without a CORS preflight (which is
never granted), and a request whose Origin is foreign is refused.

The cookie is signed with a salt that includes the share code, so rotating the code ends every
session it issued; it lapses WEB_SESSION_MAX_AGE_S after the page was last opened.
"""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.http import HttpRequest, HttpResponse

from apps.applications.models import ApiKey, App
from apps.applications.selectors import web_key_get_async
from apps.core.db import db_sync_to_async
from apps.core.errors import Forbidden, Unauthorized

APP_CODE_HEADER = "X-App-Code"
# The routes (by URL name) a session may call: the end user's own, as Dify's web app uses them,
# and the app's public description. Not the app owner's (its feedback across end users, another
# end user's record), nor `/api/v1/ask`, nor any of OpenAI's routes, where a client writes its
# own system turns and generation limits: those take the app's API key.
SESSION_ROUTES = frozenset(
    {
        "chat-messages",
        "completion-messages",
        "chat-stop",
        "completion-stop",
        "chat-events",
        "completion-events",
        "conversations",
        "conversation",
        "conversation-name",
        "messages",
        "message-feedbacks",
        "suggested",
        "files-upload",
        "file-preview",
        "parameters",
        "info",
        "meta",
        "site",
    }
)
COOKIE_PREFIX = "dp_eu_"
MAX_SHARE_CODE_CHARS = 32


@dataclass(frozen=True)
class WebSession:
    end_user: str
    account_id: int | None = None


# Browsers take a `__Host-` cookie only when it is Secure, for the whole host (no Domain) and
# path "/": no sibling subdomain can plant one. Over plain HTTP it would be dropped, so the prefix
# comes with WEB_SESSION_COOKIE_SECURE.
HOST_ONLY_PREFIX = "__Host-"


def cookie_name(app: App) -> str:
    prefix = HOST_ONLY_PREFIX if settings.WEB_SESSION_COOKIE_SECURE else ""
    return f"{prefix}{COOKIE_PREFIX}{app.id.hex}"


def _salt(app: App) -> str:
    return f"dify-platform.web-session:{app.id}:{app.web_share_code}"


def session_new(app: App, account: Any | None) -> WebSession:
    if account is not None:
        return WebSession(end_user=f"account-{account.pk}", account_id=int(account.pk))
    return WebSession(end_user=f"web-{secrets.token_urlsafe(16)}")


def session_read(app: App, value: str | None) -> WebSession | None:
    """The session a cookie value holds for this app, None when absent, forged or lapsed, or
    when the app's privacy no longer matches it."""
    if not value:
        return None
    try:
        payload = signing.loads(value, salt=_salt(app), max_age=settings.WEB_SESSION_MAX_AGE_S)
    except signing.BadSignature:  # also SignatureExpired
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), str):
        return None
    account_id = payload.get("a")
    if app.web_chat_private != isinstance(account_id, int):
        return None
    return WebSession(end_user=payload["u"], account_id=account_id)


def session_cookie_set(
    response: HttpResponse, request: HttpRequest, app: App, session: WebSession
) -> None:
    """Issue (or refresh) the browser's session cookie for the app."""
    value = signing.dumps({"u": session.end_user, "a": session.account_id}, salt=_salt(app))
    response.set_cookie(
        cookie_name(app),
        value,
        max_age=settings.WEB_SESSION_MAX_AGE_S,
        path="/",
        secure=settings.WEB_SESSION_COOKIE_SECURE or request.is_secure(),
        httponly=True,
        samesite="Strict",
    )


def _share_code(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value or len(value) > MAX_SHARE_CODE_CHARS or not value.isascii():
        return None
    return value


def _unusable() -> Unauthorized:
    return Unauthorized("This chat link is not valid (any more): ask for a new one.")


def _no_session() -> Unauthorized:
    return Unauthorized("No chat session: open the chat page again.")


def _account_active(account_id: int) -> bool:
    return get_user_model().objects.filter(pk=account_id, is_active=True).exists()


_account_active_async = db_sync_to_async(_account_active)


def _checked(api_key: ApiKey | None, cookies: Mapping[str, str]) -> tuple[ApiKey, WebSession]:
    if api_key is None:
        raise _unusable()
    if not api_key.app.enabled:
        raise Forbidden("The app is disabled.")
    session = session_read(api_key.app, cookies.get(cookie_name(api_key.app)))
    if session is None:
        raise _no_session()
    return api_key, session


async def web_caller_async(
    share_code: str | None, cookies: Mapping[str, str]
) -> tuple[ApiKey, str]:
    """The web-session key and the session's end user; Unauthorized or Forbidden otherwise."""
    code = _share_code(share_code)
    api_key, session = _checked(await web_key_get_async(share_code=code) if code else None, cookies)
    if session.account_id is not None and not await _account_active_async(session.account_id):
        raise _no_session()
    return api_key, session.end_user
