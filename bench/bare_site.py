"""The baseline of the input-layer benchmark: a bare Django project with one async view, served
by the same daphne as the platform (`python -m daphne bench.bare_site:application`). No apps, no
middleware, no database: what Django itself costs per request on this machine."""

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-bare-site",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


async def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [path("bare", bare)]
application = get_asgi_application()
