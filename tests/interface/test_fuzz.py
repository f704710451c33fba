"""Schema-driven fuzzing: schemathesis generates requests for every operation of the OpenAPI
document the platform serves and sends them to a live daphne (with a live worker running the
scripted provider), with a valid key. No request may get a 500, and every answer must have a
documented status and match its documented schema."""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from apps.applications.models import App
from apps.interface.docs import openapi_document
from apps.scheduling.models import Task
from tests.factories import make_app_with_key
from tests.processes import WebServer

# Not transaction=True: no database flush per operation. The module commits its app itself (the
# live server must see it) and removes everything the run recorded at the end.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


# The document the platform serves (tests/gateway/test_openapi.py checks they are the same).
schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def fuzz_key(django_db_setup: None, django_db_blocker: Any, live_worker: object) -> Iterator[str]:
    """A chat app whose scripted answers come at once (blocking requests finish fast)."""
    started = timezone.now()
    with django_db_blocker.unblock():
        app, key = make_app_with_key(provider_config={"text": "Fuzzed answer."}, max_tokens=4)
    yield key
    with django_db_blocker.unblock():
        App.objects.filter(id=app.id).delete()  # with its keys, conversations and messages
        Task.objects.filter(created_at__gte=started).delete()


@schema.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_matches_its_document(case: Any, live_web: WebServer, fuzz_key: str) -> None:
    case.call_and_validate(
        base_url=live_web.url,
        headers={"Authorization": f"Bearer {fuzz_key}"},
        checks=CHECKS,
        timeout=30,
    )
