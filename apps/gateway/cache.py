"""The response cache for blocking completion requests (apps opt in, each with its own TTL).

Identical requests are answered from Redis in milliseconds. Identical means: the same app, the
same `settings_version` (any change of the app's settings makes a new version, so old entries are
never read again and lapse with their TTL), the same query and the same inputs after
normalisation: Unicode NFC, runs of whitespace collapsed to one space, ends trimmed, and inputs
compared as sorted JSON. The end user is not part of the key: the same question gets the same
answer whoever asks it. Only successful, complete answers are stored (not stopped or failed ones).
"""

import hashlib
import json
import logging
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.applications.models import App
from apps.core.redis import async_client, key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedAnswer:
    body: dict[str, Any]
    age_s: float


def normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _normalised_value(value: Any) -> Any:
    if isinstance(value, str):
        return normalised(value)
    if isinstance(value, dict):
        return {str(k): _normalised_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised_value(v) for v in value]
    return value


def cache_key(app: App, query: str, inputs: dict[str, Any]) -> str:
    material = json.dumps(
        [str(app.id), app.settings_version, normalised(query), _normalised_value(inputs)],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(material.encode()).hexdigest()
    return key("cache", "answer", app.id, app.settings_version, digest)


def cache_ttl_s(app: App) -> int:
    return int(app.cache_ttl_s or settings.GATEWAY["CACHE_TTL_S"])


async def cache_get(app: App, query: str, inputs: dict[str, Any]) -> CachedAnswer | None:
    try:
        raw = await async_client().get(cache_key(app, query, inputs))
    except Exception:
        logger.warning("response cache unavailable", exc_info=True)
        return None
    if raw is None:
        return None
    stored = json.loads(raw)
    return CachedAnswer(body=stored["body"], age_s=max(0.0, time.time() - stored["stored_at"]))


async def cache_put(app: App, query: str, inputs: dict[str, Any], body: dict[str, Any]) -> None:
    """Store a complete answer's response body; a cache that is down only costs the hit."""
    value = json.dumps({"body": body, "stored_at": time.time()}, ensure_ascii=False)
    try:
        await async_client().set(cache_key(app, query, inputs), value, ex=cache_ttl_s(app))
    except Exception:
        logger.warning("could not store an answer in the response cache", exc_info=True)


def hit_body(cached: CachedAnswer) -> dict[str, Any]:
    """The stored response, saying in `metadata.cache` that it came from the cache."""
    body = dict(cached.body)
    metadata = dict(body.get("metadata") or {})
    metadata["cache"] = {"hit": True, "age_s": round(cached.age_s, 3)}
    body["metadata"] = metadata
    return body


def miss_body(body: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(body.get("metadata") or {})
    metadata["cache"] = {"hit": False}
    return {**body, "metadata": metadata}
