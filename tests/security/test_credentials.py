"""Provider credentials belong to deployments and stay with them: a key is stored sealed and
shown as a hint, sent only to its deployment's server, which must be one the operator allows
(PROVIDER_BASE_URL_ALLOWED); only superusers manage deployments; a deployment may name only the
environment variables the operator allowed, checked when saved and again when used."""

import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.test import Client, override_settings

from apps.core.sealing import UnsealError, reseal, seal, unseal
from apps.deployments.models import Deployment
from apps.deployments.selectors import endpoint_of
from apps.deployments.services import deployment_create, deployment_key_set
from apps.generation.provider_settings import endpoint_config
from apps.providers.base import ProviderError
from apps.providers.credentials import key_env_allowed
from apps.providers.openai_compat import api_key_for
from tests.applications.test_admin import form_data
from tests.factories import make_deployment

pytestmark = pytest.mark.django_db

SERVER = "http://127.0.0.1:9/v1"


def remote(**fields: object) -> Deployment:
    return make_deployment(provider="openai", base_url=SERVER, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["PATH", "DATABASE_URL", "SECRET_KEY", "HOME", "A B", "É"])
def test_a_deployment_cannot_name_other_environment_variables(name: str) -> None:
    deployment = remote()
    deployment.api_key_env = name
    with pytest.raises(ValidationError, match="api_key_env"):
        deployment.full_clean()


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
    deployment = remote()
    deployment.config = {field: "sk-plain"}
    with pytest.raises(ValidationError, match="plain text"):
        deployment.full_clean()


@pytest.mark.parametrize(
    "url",
    [
        "http://attacker.example:8000/v1",
        "https://api.openai.com.attacker.example/v1",
        "https://api.openai.com@attacker.example/v1",
        "https://user:pass@api.openai.com/v1",
        "https://api.openai.com:8443/v1",
        "http://api.openai.com/v1",  # the key in clear text over the network
        "https://api.openai.com/v1?redirect=x",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/",
    ],
)
def test_a_deployment_may_point_only_at_an_allowed_server(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        deployment_create(name="sneaky", provider="openai", model="gpt", base_url=url)
    assert not Deployment.objects.filter(name="sneaky").exists()


@override_settings(PROVIDER_BASE_URL_ALLOWED=["http://vllm.internal:8000/v1"])
def test_the_operator_chooses_which_servers_are_allowed() -> None:
    deployment_create(
        name="vllm", provider="openai", model="m", base_url="http://vllm.internal:8000/v1"
    )
    with pytest.raises(ValidationError, match="not an allowed provider server"):
        deployment_create(name="local", provider="openai", model="m", base_url=SERVER)


def test_the_key_is_sealed_in_the_database_and_opened_for_its_server_only() -> None:
    deployment = remote(api_key="sk-live-0123456789abcdef")
    row = Deployment.objects.get(id=deployment.id)
    assert "sk-live" not in row.api_key_sealed
    assert row.api_key_hint == "sk-liv…"
    config = endpoint_config(endpoint_of(row))
    assert (config["api_key"], config["base_url"]) == ("sk-live-0123456789abcdef", SERVER)
    assert "api_key" not in row.config


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


def test_a_key_that_cannot_be_opened_fails_clearly() -> None:
    deployment = remote()
    with override_settings(SEALING_SECRETS=["gone"]):
        deployment_key_set(deployment, "sk-sealed-with-a-lost-secret")
    with pytest.raises(ProviderError, match="cannot be opened") as failed:
        endpoint_config(endpoint_of(deployment))
    assert not failed.value.retryable


def superuser_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("op", "", "a-long-operator-password"))
    return client


def test_the_admin_takes_the_key_once_and_shows_only_its_hint(client: Client) -> None:
    superuser_client(client)
    deployment = remote()
    url = f"/admin/deployments/deployment/{deployment.id}/change/"
    form = {**form_data(client.get(url)), "api_key": "sk-admin-typed-0123456789"}
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:500]
    deployment.refresh_from_db()
    assert deployment.api_key_hint == "sk-adm…"
    page = client.get(url)
    assert "sk-admin-typed" not in page.content.decode()
    assert "sk-adm…" in page.content.decode()
    # Saving again without typing a key keeps it.
    assert client.post(url, form_data(page)).status_code == 302
    deployment.refresh_from_db()
    assert endpoint_config(endpoint_of(deployment))["api_key"] == "sk-admin-typed-0123456789"
    # A disallowed variable is refused at save, with the reason.
    bad = {**form_data(page), "api_key_env": "SECRET_KEY"}
    refused = client.post(url, bad)
    assert refused.status_code == 200
    assert "not an allowed key variable" in refused.content.decode()


def test_a_new_server_address_drops_the_stored_key(client: Client) -> None:
    """Whoever re-points a deployment must give the new server its own key: the stored one
    never follows the address."""
    superuser_client(client)
    deployment = remote(api_key="sk-for-the-first-server")
    url = f"/admin/deployments/deployment/{deployment.id}/change/"
    moved = {**form_data(client.get(url)), "base_url": "http://localhost:9999/v1"}
    assert client.post(url, moved).status_code == 302
    deployment.refresh_from_db()
    assert (deployment.base_url, deployment.api_key_sealed) == ("http://localhost:9999/v1", "")
    assert "api_key" not in endpoint_config(endpoint_of(deployment))


def test_only_superusers_see_or_change_deployments(client: Client) -> None:
    """Staff who may edit apps (and even deployments, by permission) never reach a
    deployment's credential: they choose among deployments on the app's page."""
    deployment = remote(api_key="sk-superuser-only")
    staff = User.objects.create_user("staff", password="a-long-staff-password", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["applications", "deployments"])
    )
    client.force_login(staff)
    for url in (
        "/admin/deployments/deployment/",
        f"/admin/deployments/deployment/{deployment.id}/change/",
        "/admin/deployments/deployment/add/",
    ):
        assert client.get(url).status_code in (302, 403, 404), url
    assert "deployments/deployment" not in client.get("/admin/").content.decode()


def test_reseal_secrets_moves_every_key_to_the_new_secret() -> None:
    from django.core.management import call_command

    with override_settings(SEALING_SECRETS=["old-secret"]):
        deployment = remote(api_key="sk-to-be-resealed")
    with override_settings(SEALING_SECRETS=["new-secret", "old-secret"]):
        call_command("reseal_secrets")
    with override_settings(SEALING_SECRETS=["new-secret"]):
        row = Deployment.objects.get(id=deployment.id)
        assert endpoint_config(endpoint_of(row))["api_key"] == "sk-to-be-resealed"
