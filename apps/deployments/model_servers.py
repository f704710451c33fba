"""The built-in model's servers of this host: one llama.cpp server per enabled `local`
deployment whose address is on this host's loopback, with its sequences (max_concurrency),
context per sequence and model file. The worker pool runs them (`manage.py model_servers`)."""

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from apps.deployments.models import Deployment, ProviderKind
from apps.deployments.selectors import endpoint_of
from apps.providers.local import LocalSettings, model_path

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class ServerSpec:
    deployment: str
    host: str
    port: int
    settings: LocalSettings


def local_server_specs() -> list[ServerSpec]:
    """What this host serves now (compared from time to time, to follow changes)."""
    platform = settings.PLATFORM
    specs = []
    deployments = Deployment.objects.filter(provider=ProviderKind.LOCAL, enabled=True)
    for deployment in deployments.order_by("name"):
        endpoint = endpoint_of(deployment)
        address = urlsplit(endpoint.url)
        if address.hostname not in LOOPBACK or address.port is None:
            continue  # another host's server
        requested = str(endpoint.config.get("model_path") or "")
        path = model_path(
            default_path=platform["LOCAL_MODEL_PATH"],
            requested=requested,
            models_dir=platform["LOCAL_MODELS_DIR"],
        )
        specs.append(
            ServerSpec(
                deployment=deployment.name,
                host=address.hostname,
                port=address.port,
                settings=LocalSettings(
                    threads=platform["LOCAL_MODEL_THREADS"],
                    context=endpoint.context_window,
                    parallel=endpoint.max_concurrency,
                    model_path=str(path),
                ),
            )
        )
    return specs


def local_model_api_key() -> str:
    """The key the built-in model's servers ask for: set, or derived from SECRET_KEY so that
    every process of a host knows it without storing it."""
    configured = str(settings.PLATFORM["LOCAL_MODEL_API_KEY"] or "")
    if configured:
        return configured
    return hmac.new(
        settings.SECRET_KEY.encode(), b"dify-platform built-in model server", hashlib.sha256
    ).hexdigest()
