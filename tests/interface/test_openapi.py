"""The OpenAPI document: served as YAML and JSON, describes exactly the routes that exist with the
methods they take, validates the requests the serializers validate, and real answers match the
documented response schemas. Swagger UI is served with its assets from the platform itself."""

import json
import uuid
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from apps.interface.docs import openapi_document
from tests.factories import make_app_with_key
from tests.gateway.live import TIMEOUT, auth
from tests.processes import WebServer

API_PREFIXES = ("v1/", "api/v1/")


def _routes(patterns: list[Any], prefix: str = "") -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and route.startswith(API_PREFIXES):
            found.append(route)
    return found


def _as_document_path(route: str) -> str:
    parts = route.split("/")
    return "/" + "/".join(
        "{" + part[1:-1].split(":")[-1] + "}" if part.startswith("<") else part for part in parts
    )


def to_json_schema(node: Any, document: dict[str, Any]) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: refs inlined, `nullable` as a null type."""
    if isinstance(node, list):
        return [to_json_schema(item, document) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return to_json_schema(document["components"]["schemas"][name], document)
    converted = {k: to_json_schema(v, document) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    document = openapi_document()
    response = document["paths"][path][method]["responses"][str(status)]
    return dict(to_json_schema(response["content"]["application/json"]["schema"], document))


def test_served_as_yaml_and_json(client: Client) -> None:
    as_yaml = yaml.safe_load(client.get("/api/schema/").content)
    as_json = json.loads(client.get("/api/schema/?format=json").content)
    assert as_yaml == as_json == json.loads(json.dumps(openapi_document()))
    assert as_json["openapi"].startswith("3.")
    assert as_json["components"]["securitySchemes"]["AppKey"]["scheme"] == "bearer"


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    document = openapi_document()
    routed = {_as_document_path(route) for route in _routes(get_resolver().url_patterns)}
    assert routed == set(document["paths"])
    for path, operations in document["paths"].items():
        concrete = path.replace("{task_id}", str(uuid.uuid4()))
        concrete = concrete.replace("{conversation_id}", "c").replace("{message_id}", "m")
        view: Any = resolve(concrete).func
        view_class = getattr(view, "view_class", None)
        for method in operations:
            if view_class is not None:  # a DRF view: the class has the handler
                assert hasattr(view_class, method), (path, method)


def test_request_schemas_are_the_validating_serializers() -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert set(schemas["ChatRequest"]["required"]) == {"inputs", "query", "user"}
    assert "query" not in schemas["CompletionRequest"].get("required", [])
    assert schemas["ChatRequest"]["properties"]["deadline_ms"]["minimum"] == 1
    assert schemas["StopRequest"]["required"] == ["user"]


@pytest.mark.django_db
def test_swagger_ui_is_served_without_a_cdn(client: Client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/api/docs/assets/swagger-ui-bundle.js" in html
    assert "/api/schema/" in html
    assert "cdn" not in html.lower()
    for asset, kind in [
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ]:
        response = client.get(f"/api/docs/assets/{asset}")
        assert response.status_code == 200
        assert kind in response["Content-Type"]
    assert client.get("/api/docs/assets/LICENSE").status_code == 404
    assert client.get("/api/docs/assets/..%2Fsettings.py").status_code == 404


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_real_answers_match_the_documented_schemas(
    live_web: WebServer, live_worker: object
) -> None:
    """Positive paths the fuzzer rarely reaches (an existing conversation and its messages)."""
    _, key = make_app_with_key(provider_config={"text": "Documented."})
    base, headers = live_web.url, auth(key)
    body = {"inputs": {}, "query": "Hi", "user": "u1", "auto_generate_name": False}
    answer = httpx.post(f"{base}/v1/chat-messages", json=body, headers=headers, timeout=TIMEOUT)
    jsonschema.validate(answer.json(), response_schema("/v1/chat-messages", "post", 200))
    conversation_id = answer.json()["conversation_id"]

    checks = [
        ("/v1/conversations", {"user": "u1"}),
        ("/v1/messages", {"user": "u1", "conversation_id": conversation_id}),
        ("/v1/parameters", {}),
        ("/v1/info", {}),
        ("/v1/meta", {}),
    ]
    for path, params in checks:
        response = httpx.get(f"{base}{path}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        jsonschema.validate(response.json(), response_schema(path, "get", 200))
    assert httpx.get(f"{base}/v1/messages", params=checks[1][1], headers=headers).json()["data"]

    feedback = httpx.post(
        f"{base}/v1/messages/{answer.json()['message_id']}/feedbacks",
        json={"rating": "like", "user": "u1"},
        headers=headers,
    )
    schema = response_schema("/v1/messages/{message_id}/feedbacks", "post", 200)
    jsonschema.validate(feedback.json(), schema)
    error = httpx.get(f"{base}/v1/info")
    jsonschema.validate(error.json(), response_schema("/v1/info", "get", 401))
