"""Apps made before deployments keep working: their provider settings became deployments."""

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.core.sealing import seal, unseal

BEFORE: list[tuple[str, Any]] = [
    ("applications", "0005_app_files_and_end_users"),
    ("deployments", None),
]
AFTER: list[tuple[str, Any]] = [
    ("applications", "0006_app_share_weight_provider_settings_to_deployments"),
    ("deployments", "0002_apps_endpoints_to_deployments"),
]


def _migrate(targets: list[tuple[str, Any]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(
        [target for target in targets if target[1] is not None]
    ).apps


@pytest.mark.django_db(transaction=True)
def test_each_distinct_endpoint_becomes_one_deployment_serving_its_apps() -> None:
    old = _migrate(BEFORE)
    App = old.get_model("applications", "App")
    server = "http://127.0.0.1:9000/v1"
    made = {
        "local-1": App.objects.create(name="local-1", provider="local"),
        "local-2": App.objects.create(name="local-2", provider="local"),
        "shared-8": App.objects.create(
            name="shared-8",
            provider="openai",
            model_name="gpt-x",
            provider_config={"base_url": server, "max_concurrency": 8},
            provider_api_key_sealed=seal("key-1"),
            provider_api_key_hint="key-",
            context_window=32000,
        ),
        "shared-16": App.objects.create(
            name="shared-16",
            provider="openai",
            model_name="gpt-x",
            provider_config={"base_url": server, "max_concurrency": 16},
            provider_api_key_sealed=seal("key-1"),  # another ciphertext of the same key
            context_window=32000,
        ),
        "other-key": App.objects.create(
            name="other-key",
            provider="openai",
            model_name="gpt-x",
            provider_config={"base_url": server},
            provider_api_key_sealed=seal("key-2"),
        ),
        "scripted": App.objects.create(
            name="scripted", provider="scripted", provider_config={"text": "hi"}
        ),
        "own-file": App.objects.create(
            name="own-file", provider="local", provider_config={"model_path": "other.gguf"}
        ),
    }
    ids = {name: app.id for name, app in made.items()}

    new = _migrate(AFTER)
    Link = new.get_model("deployments", "AppDeployment")
    served = {
        link.app_id: link.deployment
        for link in Link.objects.select_related("deployment").filter(role="primary")
    }
    assert set(served) == set(ids.values())
    builtin = served[ids["local-1"]]
    assert builtin.name == "builtin"
    assert builtin.provider == "local"
    assert served[ids["local-2"]].pk == builtin.pk
    shared = served[ids["shared-8"]]
    assert served[ids["shared-16"]].pk == shared.pk
    assert (shared.base_url, shared.model, shared.context_window) == (server, "gpt-x", 32000)
    assert shared.max_concurrency == 16  # the largest limit of the apps that share it
    assert unseal(shared.api_key_sealed) == "key-1"
    other = served[ids["other-key"]]
    assert other.pk != shared.pk
    assert unseal(other.api_key_sealed) == "key-2"
    assert other.max_concurrency == 1000  # no limit before: as many at once as before
    assert served[ids["scripted"]].config == {"text": "hi"}
    own = served[ids["own-file"]]
    assert own.provider == "local"
    assert own.config == {"model_path": "other.gguf"}
    assert own.base_url
    assert own.base_url != builtin.base_url
    App = new.get_model("applications", "App")
    assert not hasattr(App.objects.get(id=ids["scripted"]), "provider_config")
