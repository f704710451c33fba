"""ASGI entry point (served by daphne): HTTP through Django, WebSocket through Channels' routing.

The WebSocket stack has no session or origin middleware on purpose: the chat consumer
authenticates with app keys and applies its own Origin policy (apps.interface.consumers).
"""

import os

import django
from django.core.exceptions import ImproperlyConfigured

# A served process says which settings it runs with: falling back to the development settings
# would start a deployment with their defaults (the development secret among them).
if not os.environ.get("DJANGO_SETTINGS_MODULE"):
    raise ImproperlyConfigured(
        "DJANGO_SETTINGS_MODULE is not set: use dify_platform.settings.production in a "
        "deployment (dify_platform.settings.base on a developer machine; `make run` sets it)."
    )
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

# These need Django set up first.
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from apps.core.gc_tuning import gc_tune_for_serving  # noqa: E402
from apps.interface.http.forwarded import ForwardedHeadersMiddleware  # noqa: E402
from apps.interface.http.handler import PlatformASGIHandler  # noqa: E402
from apps.interface.routing import websocket_router  # noqa: E402

# Django's handler, with the API's requests served on the event loop alone
# (apps.interface.http.handler).
django_asgi_app = PlatformASGIHandler()
# The admin's CSS and JS: served by the platform itself unless a proxy in front serves the
# collected files (SERVE_STATIC=false, see deploy/); only paths under STATIC_URL are intercepted.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app

# The client's address and scheme, from the forwarded headers of trusted proxies only.
application = ForwardedHeadersMiddleware(
    ProtocolTypeRouter({"http": http_app, "websocket": websocket_router})
)

# Import every view now (Django loads the URLconf on the first request), then freeze start-up's
# objects out of the collector's way (apps.core.gc_tuning).
get_resolver().url_patterns  # noqa: B018
gc_tune_for_serving()
