"""Rows for tests, made through the same services the platform uses."""

from typing import TYPE_CHECKING, Any

from django.conf import settings

from apps.applications.models import ApiKey, App
from apps.applications.services import api_key_create
from apps.deployments.models import Deployment, ProviderKind
from apps.deployments.selectors import app_route
from apps.deployments.services import (
    app_create_served,
    deployment_create,
    deployment_name_free,
)

if TYPE_CHECKING:
    from apps.providers.local import LocalProvider

SCRIPTED_TEXT = "Hello there, this is a scripted answer."
# As many at once as a test sends: capacity is not what most tests are about.
UNLIMITED = 1000


def make_deployment(
    *,
    provider: str = ProviderKind.SCRIPTED,
    config: dict[str, Any] | None = None,
    name: str = "test-deployment",
    **fields: Any,
) -> Deployment:
    """A deployment; `provider=local` is the built-in model server of this test run."""
    config = dict(config or {})
    fields.setdefault("base_url", str(config.pop("base_url", "")))
    fields.setdefault("api_key_env", str(config.pop("api_key_env", "")))
    fields.setdefault("max_concurrency", config.pop("max_concurrency", UNLIMITED))
    if provider == ProviderKind.LOCAL:
        from tests.processes import builtin_model_url

        fields["base_url"] = fields["base_url"] or builtin_model_url()
        fields.setdefault("model", "SmolLM2-135M-Instruct")
        fields.setdefault("context_window", settings.PLATFORM["LOCAL_MODEL_CONTEXT"])
        fields["max_concurrency"] = min(
            fields["max_concurrency"], settings.PLATFORM["LOCAL_MODEL_PARALLEL"]
        )
    fields.setdefault("model", "scripted" if provider == ProviderKind.SCRIPTED else "model")
    return deployment_create(
        name=deployment_name_free(name), provider=provider, config=config, **fields
    )


def make_app(**fields: Any) -> App:
    """An app with a deployment of its own. The provider's settings may be given as apps had
    them before deployments (provider, provider_config, model_name, context_window,
    provider_api_key), or as `deployments=[...]` (and `fallbacks=[...]`)."""
    fields.setdefault("name", "Test app")
    fields.setdefault("mode", "chat")
    fields.setdefault("max_tokens", 16)
    deployments = fields.pop("deployments", None)
    fallbacks = fields.pop("fallbacks", ())
    endpoint = {
        "provider": fields.pop("provider", ProviderKind.SCRIPTED),
        "config": fields.pop("provider_config", {"text": SCRIPTED_TEXT}),
        "api_key": fields.pop("provider_api_key", ""),
    }
    for old, new in (("model_name", "model"), ("context_window", "context_window")):
        if old in fields:
            endpoint[new] = fields.pop(old)
    if deployments is None:
        if fields.get("vision_enabled"):
            endpoint["vision"] = True  # a model that reads images, as the app says
        deployments = [make_deployment(name=fields["name"], **endpoint)]
    return app_create_served(deployments=deployments, fallbacks=fallbacks, **fields)


def make_key(app: App, **fields: Any) -> tuple[ApiKey, str]:
    return api_key_create(app=app, **fields)


def make_app_with_key(**fields: Any) -> tuple[App, str]:
    app = make_app(**fields)
    _, clear_key = make_key(app)
    return app, clear_key


def app_deployment(app: App) -> Deployment:
    """The app's first deployment (its own, as make_app made it)."""
    link = app.deployment_links.select_related("deployment").order_by("position").first()
    assert link is not None
    return link.deployment


def model_of(app: App) -> str:
    """The model name clients know the app by (`model` on OpenAI's routes)."""
    return app_route(app_id=app.id).model_name


def builtin_provider() -> "LocalProvider":
    """A client of this test run's built-in model server (generation and its tokenizer)."""
    from apps.deployments.model_servers import local_model_api_key
    from apps.providers.local import LocalProvider
    from tests.processes import builtin_model_url

    return LocalProvider({"base_url": builtin_model_url(), "api_key": local_model_api_key()})
