"""Provider credentials are sealed: an app's key is stored encrypted and shown as a hint, and an
app can name only the environment variables the operator allowed, checked when saved and again
when used, so nothing else of a worker's environment can reach a provider."""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client, override_settings

from apps.applications.models import App
from apps.applications.services import app_provider_key_set
from apps.core.sealing import UnsealError, reseal, seal, unseal
from apps.generation.provider_settings import app_provider_config
from apps.providers.base import ProviderError
from apps.providers.credentials import key_env_allowed
from apps.providers.openai_compat import api_key_for
from tests.admin.test_admin import form_data
from tests.factories import make_app

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["PATH", "DATABASE_URL", "SECRET_KEY", "HOME", "", "A B", "É"])
def test_an_app_cannot_name_other_environment_variables(name: str) -> None:
    app = make_app(provider="openai", provider_config={"base_url": "http://127.0.0.1:9"})
    app.provider_config = {**app.provider_config, "api_key_env": name}
    if name == "":
        app.full_clean()  # empty: the default variable
        return
    with pytest.raises(ValidationError, match="api_key_env"):
        app.full_clean()


def test_allowed_names_and_prefixes() -> None:
    allowed = ("OPENAI_API_KEY", "PROVIDER_KEY_*")
    assert key_env_allowed("OPENAI_API_KEY", allowed)
    assert key_env_allowed("PROVIDER_KEY_VLLM", allowed)
    assert not key_env_allowed("PROVIDER_KEY", allowed)  # the prefix alone names nothing
    assert not key_env_allowed("OPENAI_API_KEY_2", allowed)
    assert not key_env_allowed("PATH", allowed)
    assert not key_env_allowed("PATH", ("*",))  # a bare star allows nothing


def test_a_disallowed_name_is_never_read_even_if_saved_around_the_validators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH_LIKE_SECRET", "must-not-leave")
    with pytest.raises(ProviderError) as refused:
        api_key_for({"api_key_env": "PATH_LIKE_SECRET"}, ("OPENAI_API_KEY", "PROVIDER_KEY_*"))
    assert not refused.value.retryable
    assert "must-not-leave" not in str(refused.value)
    monkeypatch.setenv("PROVIDER_KEY_TEST", "sk-allowed")
    assert api_key_for({"api_key_env": "PROVIDER_KEY_TEST"}) == "sk-allowed"


@pytest.mark.parametrize("field", ["api_key", "apiKey", "token", "secret", "password"])
def test_a_secret_written_into_the_json_is_refused(field: str) -> None:
    app = make_app(provider="openai")
    app.provider_config = {"base_url": "http://127.0.0.1:9", field: "sk-plain"}
    with pytest.raises(ValidationError, match="plain text"):
        app.full_clean()


def test_the_key_is_sealed_in_the_database_and_opened_for_the_provider() -> None:
    app = make_app(provider="openai", provider_config={"base_url": "http://127.0.0.1:9"})
    app_provider_key_set(app, "sk-live-0123456789abcdef")
    app.save()
    row = App.objects.get(id=app.id)
    assert "sk-live" not in row.provider_api_key_sealed
    assert row.provider_api_key_hint == "sk-liv…"
    assert app_provider_config(row)["api_key"] == "sk-live-0123456789abcdef"
    assert "api_key" not in row.provider_config


def test_rotating_the_sealing_secret() -> None:
    with override_settings(SEALING_SECRETS=["old-secret"]):
        sealed = seal("sk-rotate-me")
    with override_settings(SEALING_SECRETS=["new-secret"]), pytest.raises(UnsealError):
        unseal(sealed)  # an unknown secret opens nothing (no garbage either)
    with override_settings(SEALING_SECRETS=["new-secret", "old-secret"]):
        resealed = reseal(sealed)
        assert unseal(resealed) == "sk-rotate-me"
    with override_settings(SEALING_SECRETS=["new-secret"]):
        assert unseal(resealed) == "sk-rotate-me"


def test_a_key_that_cannot_be_opened_fails_the_task_clearly() -> None:
    app = make_app(provider="openai", provider_config={"base_url": "http://127.0.0.1:9"})
    with override_settings(SEALING_SECRETS=["gone"]):
        app_provider_key_set(app, "sk-sealed-with-a-lost-secret")
    with pytest.raises(ProviderError, match="cannot be opened") as failed:
        app_provider_config(app)
    assert not failed.value.retryable


def test_the_admin_takes_the_key_once_and_shows_only_its_hint(client: Client) -> None:
    operator = User.objects.create_superuser("op", "", "a-long-operator-password")
    client.force_login(operator)
    app = make_app(provider="openai", provider_config={"base_url": "http://127.0.0.1:9"})
    url = f"/admin/applications/app/{app.id}/change/"
    form = {**form_data(client.get(url)), "provider_api_key": "sk-admin-typed-0123456789"}
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:500]
    app.refresh_from_db()
    assert app.provider_api_key_hint == "sk-adm…"
    page = client.get(url)
    assert "sk-admin-typed" not in page.content.decode()
    assert "sk-adm…" in page.content.decode()
    # Saving again without typing a key keeps it.
    assert client.post(url, form_data(page)).status_code == 302
    app.refresh_from_db()
    assert app_provider_config(app)["api_key"] == "sk-admin-typed-0123456789"
    # A disallowed variable is refused at save, with the reason.
    bad = {**form_data(page), "provider_config": '{"api_key_env": "SECRET_KEY"}'}
    refused = client.post(url, bad)
    assert refused.status_code == 200
    assert "not an allowed provider key variable" in refused.content.decode()


def test_reseal_secrets_moves_every_key_to_the_new_secret() -> None:
    from django.core.management import call_command

    with override_settings(SEALING_SECRETS=["old-secret"]):
        app = make_app(provider="openai", provider_config={"base_url": "http://127.0.0.1:9"})
        app_provider_key_set(app, "sk-to-be-resealed")
        app.save()
    with override_settings(SEALING_SECRETS=["new-secret", "old-secret"]):
        call_command("reseal_secrets")
    with override_settings(SEALING_SECRETS=["new-secret"]):
        assert app_provider_config(App.objects.get(id=app.id))["api_key"] == "sk-to-be-resealed"
