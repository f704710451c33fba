"""Creating deployments and choosing which serve an app."""

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from apps.applications.models import App
from apps.core.sealing import hint, reseal, seal
from apps.deployments.models import (
    BUILTIN_DEPLOYMENT,
    AppDeployment,
    Deployment,
    DeploymentRole,
    ProviderKind,
)


def deployment_key_set(deployment: Deployment, clear_key: str) -> None:
    """Seal the deployment's key onto the row (saved with it); an empty key removes it."""
    clear_key = clear_key.strip()
    deployment.api_key_sealed = seal(clear_key) if clear_key else ""
    deployment.api_key_hint = hint(clear_key) if clear_key else ""


@transaction.atomic
def deployment_create(
    *,
    name: str,
    model: str,
    provider: str = ProviderKind.OPENAI,
    api_key: str = "",
    **fields: Any,
) -> Deployment:
    """A new deployment, checked as the admin checks it (its base URL must be allowed)."""
    deployment = Deployment(name=name, model=model, provider=provider, **fields)
    deployment_key_set(deployment, api_key)
    deployment.full_clean()
    deployment.save()
    return deployment


def builtin_deployment() -> Deployment:
    """The built-in model's deployment (made on first use): the apps that name none use it."""
    existing = Deployment.objects.filter(name=BUILTIN_DEPLOYMENT).first()
    if existing is not None:
        return existing
    platform = settings.PLATFORM
    deployment, _ = Deployment.objects.get_or_create(
        name=BUILTIN_DEPLOYMENT,
        defaults={
            "provider": ProviderKind.LOCAL,
            "model": "SmolLM2-135M-Instruct",
            "context_window": platform["LOCAL_MODEL_CONTEXT"],
            "max_concurrency": platform["LOCAL_MODEL_PARALLEL"],
        },
    )
    return deployment


@transaction.atomic
def app_deployments_set(
    *, app: App, primaries: Sequence[Deployment], fallbacks: Sequence[Deployment] = ()
) -> None:
    """Serve the app by these deployments (primaries share its load; fallbacks in order)."""
    chosen = [*primaries, *fallbacks]
    if len({deployment.pk for deployment in chosen}) != len(chosen):
        raise ValueError("a deployment is named twice")
    AppDeployment.objects.filter(app=app).delete()
    AppDeployment.objects.bulk_create(
        [
            AppDeployment(app=app, deployment=d, role=DeploymentRole.PRIMARY, position=i)
            for i, d in enumerate(primaries)
        ]
        + [
            AppDeployment(app=app, deployment=d, role=DeploymentRole.FALLBACK, position=i)
            for i, d in enumerate(fallbacks)
        ]
    )


def deployment_name_free(base: str) -> str:
    """A deployment name like `base` that no deployment has yet."""
    stem = slugify(base)[:56] or "deployment"
    name, number = stem, 1
    while Deployment.objects.filter(name=name).exists():
        number += 1
        name = f"{stem}-{number}"
    return name


@transaction.atomic
def app_create_served(
    *,
    name: str,
    mode: str = "chat",
    deployments: Sequence[Deployment] = (),
    fallbacks: Sequence[Deployment] = (),
    **fields: Any,
) -> App:
    """An app served by these deployments (none: the built-in model's)."""
    app = App.objects.create(name=name, mode=mode, **fields)
    if deployments or fallbacks:
        app_deployments_set(app=app, primaries=deployments, fallbacks=fallbacks)
    return app


@transaction.atomic
def app_create_with_endpoint(
    *,
    name: str,
    mode: str = "chat",
    provider: str,
    model: str,
    deployment_fields: dict[str, Any] | None = None,
    **fields: Any,
) -> App:
    """An app with a deployment of its own (named after it): a single endpoint, as scripts,
    tests and benchmarks set one up in one step."""
    deployment = deployment_create(
        name=deployment_name_free(name),
        provider=provider,
        model=model,
        **(deployment_fields or {}),
    )
    return app_create_served(name=name, mode=mode, deployments=[deployment], **fields)


@transaction.atomic
def deployment_keys_reseal() -> int:
    """Seal every deployment's key again with the newest secret; all or none."""
    count = 0
    for deployment in Deployment.objects.select_for_update().exclude(api_key_sealed=""):
        deployment.api_key_sealed = reseal(deployment.api_key_sealed)
        deployment.save(update_fields=["api_key_sealed", "updated_at"])
        count += 1
    return count
