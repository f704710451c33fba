"""Looking up keys and apps (cached per process, see apps.applications.config_cache)."""

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from apps.applications.config_cache import (
    ConfigCache,
    config_version,
    config_version_async,
    config_version_heard,
)
from apps.applications.models import ApiKey, App
from apps.applications.services import api_key_digest
from apps.core.db import db_sync_to_async

Row = TypeVar("Row")

_keys = ConfigCache()
_apps = ConfigCache()
_web_keys = ConfigCache()


def _cached(cache: ConfigCache, lookup: str, read: Callable[[str], Row]) -> Row:
    version = config_version()
    hit, row = cache.get(lookup, version)
    if not hit:
        row = read(lookup)
        cache.put(lookup, version, row)
    return row  # type: ignore[no-any-return]


_named_caches: dict[str, ConfigCache] = {}


def cached(cache_name: str, lookup: str, read: Callable[[str], Row]) -> Row:
    """`read(lookup)`, kept in this process's cache `cache_name` while the config version holds
    (rows of other apps that change with apps and keys: deployments, apps' routes)."""
    cache = _named_caches.get(cache_name)
    if cache is None:
        cache = _named_caches.setdefault(cache_name, ConfigCache())
    return _cached(cache, lookup, read)


async def cached_async(cache_name: str, lookup: str, read: Callable[[str], Awaitable[Row]]) -> Row:
    """`cached` from the event loop: a cached row costs no thread hop."""
    cache = _named_caches.get(cache_name)
    if cache is None:
        cache = _named_caches.setdefault(cache_name, ConfigCache())
    return await _cached_async(cache, lookup, read)


async def _cached_async(
    cache: ConfigCache, lookup: str, read: Callable[[str], Awaitable[Row]]
) -> Row:
    """As _cached; a cached row costs no thread hop."""
    version = await config_version_async()
    hit, row = cache.get(lookup, version)
    if not hit:
        row = await read(lookup)
        cache.put(lookup, version, row)
    return row  # type: ignore[no-any-return]


def _api_key_read(digest: str) -> ApiKey | None:
    return (
        ApiKey.objects.select_related("app")
        .filter(digest=digest, revoked_at__isnull=True, for_web_sessions=False)
        .first()
    )


_api_key_read_async = db_sync_to_async(_api_key_read)


def api_key_get_active(*, clear_key: str) -> ApiKey | None:
    """The key row (with its app) for a clear key, or None when unknown or revoked."""
    return _cached(_keys, api_key_digest(clear_key), _api_key_read)


async def api_key_get_active_async(*, clear_key: str) -> ApiKey | None:
    return await _cached_async(_keys, api_key_digest(clear_key), _api_key_read_async)


def api_key_known_active(*, clear_key: str) -> bool:
    """Whether this process holds the key as active in its cache now: no database, no Redis
    (False whenever it would have to ask)."""
    version = config_version_heard()
    if version is None:
        return False
    hit, row = _keys.get(api_key_digest(clear_key), version)
    return hit and row is not None


def app_get(*, app_id: uuid.UUID | str) -> App | None:
    """The app row, as cached for this process while the config version holds."""
    return _cached(_apps, str(app_id), lambda lookup: App.objects.filter(id=lookup).first())


def _web_key_read(share_code: str) -> ApiKey | None:
    return (
        ApiKey.objects.select_related("app")
        .filter(
            for_web_sessions=True,
            revoked_at__isnull=True,
            app__web_share_code=share_code,
            app__web_chat_enabled=True,
        )
        .first()
    )


_web_key_read_async = db_sync_to_async(_web_key_read)


async def web_key_get_async(*, share_code: str) -> ApiKey | None:
    """The web-session key (with its app) of the app whose chat is served under this share
    code, or None: unknown code, chat not enabled, or the page never served yet."""
    return await _cached_async(_web_keys, share_code, _web_key_read_async)
