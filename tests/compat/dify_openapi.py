"""Dify's OpenAPI document as JSON Schemas we can validate recorded exchanges against.

OpenAPI 3.0 schemas are not quite JSON Schema; the differences that matter here are handled:
- `$ref`s into `#/components/...` are inlined;
- `nullable: true` becomes a type that also admits null;
- `oneOf` becomes `anyOf`: the document's alternatives (e.g. the input-form controls) declare no
  required keys, so every object matches all of them and a strict `oneOf` would refuse them all.
A response check can also require every documented top-level field (`require_documented`): a
client written against Dify may read any of them.
"""

import json
from copy import deepcopy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SPEC_PATH = REPO_ROOT.parent / "shared" / "reference" / "dify-openapi-service.json"
API_PREFIX = "/v1"  # the document's paths are relative to the API base, which ends in /v1


class SpecMissing(RuntimeError):
    pass


@cache
def spec() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        raise SpecMissing(
            f"Dify's OpenAPI document is missing: expected {SPEC_PATH} (the shared/ folder beside "
            "the clone, from langgenius/dify-docs en/api-reference/openapi_service.json)."
        )
    loaded: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return loaded


def _resolve(ref: str) -> Any:
    node: Any = spec()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def to_json_schema(node: Any, depth: int = 0) -> Any:
    """The OpenAPI schema `node` as a self-contained JSON Schema (see the module docstring)."""
    if depth > 40:
        raise RecursionError("schema nests too deep (a recursive $ref?)")
    if isinstance(node, list):
        return [to_json_schema(item, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return to_json_schema(_resolve(node["$ref"]), depth + 1)
    converted = {
        ("anyOf" if key == "oneOf" else key): to_json_schema(value, depth + 1)
        for key, value in node.items()
        if key not in ("nullable", "discriminator", "example")
    }
    if node.get("nullable"):
        if "type" in converted:
            types = converted["type"]
            converted["type"] = [*(types if isinstance(types, list) else [types]), "null"]
            if "enum" in converted and None not in converted["enum"]:
                converted["enum"] = [*converted["enum"], None]
        else:
            converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


def require_documented(schema: dict[str, Any], depth: int = 2) -> dict[str, Any]:
    """A copy of `schema` in which every documented property of the object (and of the objects
    in its array properties, `depth` levels down) is required."""
    schema = deepcopy(schema)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        schema["required"] = sorted(properties)
        if depth > 1:
            for name, sub in properties.items():
                items = sub.get("items") if isinstance(sub, dict) else None
                if isinstance(items, dict) and "properties" in items:
                    properties[name] = {**sub, "items": require_documented(items, depth - 1)}
    return schema


def operation(method: str, path: str) -> dict[str, Any]:
    """The operation for one of our URLs' templates, e.g. ("post", "/v1/chat-messages")."""
    found: dict[str, Any] = spec()["paths"][path.removeprefix(API_PREFIX)][method.lower()]
    return found


def request_schema(method: str, path: str) -> Any:
    body = operation(method, path)["requestBody"]
    return to_json_schema(body["content"]["application/json"]["schema"])


def response_entry(method: str, path: str, status: int) -> dict[str, Any]:
    entry = operation(method, path)["responses"][str(status)]
    return dict(_resolve(entry["$ref"]) if "$ref" in entry else entry)


def response_schema(method: str, path: str, status: int = 200) -> Any:
    content = response_entry(method, path, status)["content"]["application/json"]
    return to_json_schema(content["schema"])


def error_examples(method: str, path: str, status: int) -> list[dict[str, Any]]:
    """The error bodies the document shows for a status (it gives examples, not schemas)."""
    content = response_entry(method, path, status)["content"]["application/json"]
    return [example["value"] for example in content["examples"].values()]


def parameter_schemas(method: str, path: str, location: str) -> dict[str, Any]:
    return {
        param["name"]: to_json_schema(param["schema"])
        for param in operation(method, path).get("parameters", [])
        if param["in"] == location
    }


def stream_event_schema(event: str) -> Any:
    mapping = spec()["components"]["schemas"]["ChunkChatEvent"]["discriminator"]["mapping"]
    return to_json_schema({"$ref": mapping[event]})


def validate(instance: Any, schema: Any) -> None:
    """Raises jsonschema.ValidationError naming the offending field; `format` is checked too
    (uuid; formats jsonschema does not know, like `decimal`, pass)."""
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise error
