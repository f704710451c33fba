"""Metrics stay bounded whatever clients send: labels come from closed sets (a method the
platform does not know is `other`, a path no route matches is `unmatched`), and the cluster's
metrics hash takes no new field past METRICS_MAX_FIELDS (what is refused is counted)."""

from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from apps.core.metrics import metric_inc, metrics_flush, metrics_key
from apps.core.redis import sync_client
from tests.factories import make_app_with_key

pytestmark = pytest.mark.django_db


def fields() -> set[str]:
    metrics_flush()
    keys: Any = sync_client().hkeys(metrics_key())
    return {field.decode() for field in keys}


def test_invented_methods_and_paths_add_no_labels(client: Client) -> None:
    _, key = make_app_with_key()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/parameters", headers=headers).status_code == 200
    before = fields()
    for index in range(40):
        client.generic(f"X-INVENTED-{index}", "/v1/parameters", headers=headers)
        client.get(f"/v1/no-such-route-{index}", headers=headers)
        client.generic(f"get{index}", f"/nowhere/{index}")
    added = fields() - before
    http = {field for field in added if field.startswith("dp_http_")}
    assert not any("INVENTED" in field or "no-such-route" in field for field in added)
    methods = {part for field in http for part in field.split(",") if part.startswith("method=")}
    assert methods <= {'method="other"', 'method="GET"'}, methods
    # A handful of fields (the other method and the unmatched route, by status), not hundreds.
    assert len(added) <= 20, sorted(added)


@override_settings(METRICS_MAX_FIELDS=50)
def test_the_metrics_hash_takes_no_field_past_its_limit() -> None:
    metric_inc("dp_requests_refused_total", {"reason": "kept"})
    metrics_flush()
    for index in range(200):
        metric_inc("dp_requests_refused_total", {"reason": f"r{index}"})
    metric_inc("dp_requests_refused_total", {"reason": "kept"})
    metrics_flush()
    client = sync_client()
    assert client.hlen(metrics_key()) <= settings.METRICS_MAX_FIELDS
    kept = client.hget(metrics_key(), 'dp_requests_refused_total|reason="kept"')
    assert kept is not None
    assert float(kept) == 2  # a field already there still counts
    dropped = client.hget(metrics_key(), "dp_metrics_dropped_total|")
    assert dropped is not None
    assert float(dropped) >= 150
