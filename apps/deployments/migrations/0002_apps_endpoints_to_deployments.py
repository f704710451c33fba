"""Each app's provider settings become a deployment that serves it: one per distinct endpoint
(provider, server, model, key, settings), so apps that shared a server now share its
capacity. The built-in model is one deployment, `builtin`. An app's own concurrency limit
(provider_config.max_concurrency) becomes its deployment's capacity (the largest, where apps
shared one); without one, the deployment takes as many at once as before (1000)."""

import json

from django.conf import settings
from django.db import migrations
from django.utils.text import slugify

UNLIMITED = 1000


def _clear_key(sealed: str) -> str:
    if not sealed:
        return ""
    from apps.core.sealing import UnsealError, unseal

    try:
        return unseal(sealed)
    except UnsealError:
        return "sealed:" + sealed  # unreadable now: apps that share it are not merged


def _name(deployment_model, base: str) -> str:
    stem = slugify(base)[:56] or "deployment"
    name, number = stem, 1
    while deployment_model.objects.filter(name=name).exists():
        number += 1
        name = f"{stem}-{number}"
    return name


def forwards(apps, schema_editor):
    App = apps.get_model("applications", "App")
    Deployment = apps.get_model("deployments", "Deployment")
    AppDeployment = apps.get_model("deployments", "AppDeployment")
    platform = settings.PLATFORM
    made = {}
    local_servers = 0
    for app in App.objects.order_by("created_at"):
        config = dict(app.provider_config or {})
        limit = config.pop("max_concurrency", None)
        limit = (
            limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None
        )
        base_url = str(config.pop("base_url", "") or "")
        api_key_env = str(config.pop("api_key_env", "") or "")
        if app.provider == "local" and not config.get("model_path"):
            signature = ("builtin",)
        else:
            signature = (
                app.provider,
                base_url,
                app.model_name,
                api_key_env,
                _clear_key(app.provider_api_key_sealed),
                json.dumps(config, sort_keys=True),
                app.context_window if app.provider != "local" else 0,
            )
        deployment = made.get(signature)
        if deployment is None:
            if signature == ("builtin",):
                deployment = Deployment.objects.filter(name="builtin").first() or Deployment(
                    name="builtin",
                    provider="local",
                    model=app.model_name or "SmolLM2-135M-Instruct",
                    context_window=platform["LOCAL_MODEL_CONTEXT"],
                    max_concurrency=platform["LOCAL_MODEL_PARALLEL"],
                )
            else:
                if app.provider == "local":
                    # Another model file: a model server of its own, on the next free port.
                    local_servers += 1
                    base_url = f"http://127.0.0.1:{platform['LOCAL_MODEL_PORT'] + local_servers}/v1"
                host = base_url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
                deployment = Deployment(
                    name=_name(Deployment, f"{host or app.provider}-{app.model_name}"),
                    provider=app.provider,
                    base_url=base_url,
                    model=app.model_name,
                    api_key_sealed=app.provider_api_key_sealed,
                    api_key_hint=app.provider_api_key_hint,
                    api_key_env=api_key_env,
                    config=config,
                    context_window=(
                        platform["LOCAL_MODEL_CONTEXT"]
                        if app.provider == "local"
                        else app.context_window
                    ),
                    max_concurrency=limit or UNLIMITED,
                )
            deployment.save()
            made[signature] = deployment
        elif limit and signature != ("builtin",) and limit > deployment.max_concurrency:
            deployment.max_concurrency = limit
            deployment.save(update_fields=["max_concurrency"])
        if limit and deployment.max_concurrency == UNLIMITED and signature != ("builtin",):
            deployment.max_concurrency = limit
            deployment.save(update_fields=["max_concurrency"])
        AppDeployment.objects.create(app=app, deployment=deployment, role="primary")


class Migration(migrations.Migration):
    dependencies = [
        ("applications", "0005_app_files_and_end_users"),
        ("deployments", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]
