"""Which deployments serve an app, as each process last read them (cached with the config
version, like apps and keys: see apps.applications.config_cache)."""

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.applications.selectors import cached, cached_async
from apps.core.db import db_sync_to_async
from apps.deployments.models import (
    BUILTIN_DEPLOYMENT,
    AppDeployment,
    Deployment,
    DeploymentRole,
    ProviderKind,
)


@dataclass(frozen=True)
class Endpoint:
    """A deployment as workers call it and the scheduler counts it. `weight` is the app's
    routing weight for it (1 outside a route)."""

    name: str
    provider: str
    base_url: str
    model: str
    api_key_sealed: str
    api_key_env: str
    config: dict[str, Any]
    context_window: int
    max_concurrency: int
    reserved_for_high: int
    rpm_limit: int | None
    tpm_limit: int | None
    vision: bool
    weight: int = 1

    @property
    def url(self) -> str:
        """Where its server is: the built-in model's own port when no URL is set."""
        if self.base_url or self.provider != ProviderKind.LOCAL:
            return self.base_url
        return f"http://127.0.0.1:{settings.PLATFORM['LOCAL_MODEL_PORT']}/v1"


@dataclass(frozen=True)
class AppRoute:
    """An app's deployments: primaries share its load; fallbacks serve, in order, while every
    primary fails or cools down."""

    primaries: tuple[Endpoint, ...]
    fallbacks: tuple[Endpoint, ...]

    @property
    def all(self) -> tuple[Endpoint, ...]:
        return (*self.primaries, *self.fallbacks)

    @property
    def model_name(self) -> str:
        """The model clients know the app by (its first primary's)."""
        first = self.primaries or self.fallbacks
        return first[0].model if first else ""

    @property
    def vision(self) -> bool:
        """Every deployment that may answer reads images."""
        return bool(self.all) and all(endpoint.vision for endpoint in self.all)

    def get(self, name: str) -> Endpoint | None:
        return next((endpoint for endpoint in self.all if endpoint.name == name), None)


def endpoint_of(deployment: Deployment, weight: int = 1) -> Endpoint:
    return Endpoint(
        name=deployment.name,
        provider=deployment.provider,
        base_url=deployment.base_url,
        model=deployment.model,
        api_key_sealed=deployment.api_key_sealed,
        api_key_env=deployment.api_key_env,
        config=dict(deployment.config or {}),
        context_window=deployment.context_window,
        max_concurrency=deployment.max_concurrency,
        reserved_for_high=deployment.reserved_for_high,
        rpm_limit=deployment.rpm_limit,
        tpm_limit=deployment.tpm_limit,
        vision=deployment.vision,
        weight=weight,
    )


def _route_read(app_id: str) -> AppRoute:
    links = list(
        AppDeployment.objects.select_related("deployment").filter(
            app_id=app_id, deployment__enabled=True
        )
    )
    if not links and not AppDeployment.objects.filter(app_id=app_id).exists():
        # An app that names no deployment is served by the built-in model.
        builtin = Deployment.objects.filter(name=BUILTIN_DEPLOYMENT, enabled=True).first()
        return AppRoute((endpoint_of(builtin),) if builtin else (), ())
    primaries = tuple(
        endpoint_of(link.deployment, link.weight)
        for link in links
        if link.role == DeploymentRole.PRIMARY
    )
    fallbacks = tuple(
        endpoint_of(link.deployment) for link in links if link.role == DeploymentRole.FALLBACK
    )
    return AppRoute(primaries, fallbacks)


def app_route(*, app_id: uuid.UUID | str) -> AppRoute:
    """The app's enabled deployments, as cached for this process while the config version
    holds."""
    return cached("routes", str(app_id), _route_read)


_route_read_async = db_sync_to_async(_route_read)


async def app_route_async(*, app_id: uuid.UUID | str) -> AppRoute:
    """`app_route` from the event loop."""
    return await cached_async("routes", str(app_id), _route_read_async)


def _endpoint_read(name: str) -> Endpoint | None:
    deployment = Deployment.objects.filter(name=name).first()
    return endpoint_of(deployment) if deployment is not None else None


def endpoint_get(*, name: str) -> Endpoint | None:
    """A deployment by name (enabled or not), cached like routes."""
    return cached("endpoints", name, _endpoint_read)
