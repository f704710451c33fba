"""Apps and keys are cached per process; any change through the ORM reaches every process at
once (live daphne here), so revoking a key or disabling an app takes effect on the next request."""

import httpx
import pytest
from django.utils import timezone

from apps.applications.models import ApiKey, App
from tests.factories import app_deployment, make_app_with_key
from tests.processes import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BODY = {"inputs": {}, "query": "hi", "user": "u1"}


def post(web: WebServer, key: str) -> httpx.Response:
    return httpx.post(
        f"{web.url}/v1/chat-messages",
        json=BODY,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_changes_reach_a_running_web_process_at_once(
    live_web: WebServer, live_worker: object
) -> None:
    app, key = make_app_with_key(provider_config={"text": "first"})
    assert post(live_web, key).json()["answer"] == "first"  # the key and app are now cached

    deployment = app_deployment(app)
    deployment.config = {"text": "second"}
    deployment.save()  # a save (signal)
    assert post(live_web, key).json()["answer"] == "second"

    App.objects.filter(id=app.id).update(enabled=False)  # a bulk update
    assert post(live_web, key).status_code == 403

    App.objects.filter(id=app.id).update(enabled=True)
    assert post(live_web, key).status_code == 200
    ApiKey.objects.filter(app=app).update(revoked_at=timezone.now())
    assert post(live_web, key).status_code == 401
