"""Probes answer past the middleware chain (they need none of it), with the API's headers, for
any Host a load balancer or the kubelet (a pod's IP) sends; readiness says what it checked."""

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

pytestmark = pytest.mark.django_db


def get(path: str, **headers: str) -> Any:
    """Through the ASGI handler, as daphne serves it (the test Client would take the WSGI path)."""
    return async_to_sync(AsyncClient(headers=headers).get)(path)


def test_liveness_answers_for_any_host_with_the_api_headers() -> None:
    response = get("/healthz", Host="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in response.headers  # no session or CSRF machinery ran


def test_readiness_reports_its_checks() -> None:
    response = get("/readyz")
    body = response.json()
    assert set(body["checks"]) >= {"postgresql", "redis"}
    assert body["checks"]["postgresql"] == "ok"
    assert body["checks"]["redis"] == "ok"
    # No worker runs in this test: not ready, and it says so.
    assert response.status_code == 503
    assert body["status"] == "not ready"
