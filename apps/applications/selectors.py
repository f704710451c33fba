"""Looking up keys and apps (cached per process, see apps.applications.config_cache)."""

import uuid

from apps.applications.config_cache import ConfigCache, config_version, config_version_async
from apps.applications.models import ApiKey, App
from apps.applications.services import api_key_digest
from apps.core.db import db_sync_to_async

_keys = ConfigCache()
_apps = ConfigCache()
_web_apps = ConfigCache()


def _api_key_read(digest: str) -> ApiKey | None:
    return (
        ApiKey.objects.select_related("app")
        .filter(digest=digest, revoked_at__isnull=True, for_web_sessions=False)
        .first()
    )


def api_key_get_active(*, clear_key: str) -> ApiKey | None:
    """The key row (with its app) for a clear key, or None when unknown or revoked."""
    digest = api_key_digest(clear_key)
    version = config_version()
    hit, api_key = _keys.get(digest, version)
    if not hit:
        api_key = _api_key_read(digest)
        _keys.put(digest, version, api_key)
    return api_key


_api_key_read_async = db_sync_to_async(_api_key_read)


async def api_key_get_active_async(*, clear_key: str) -> ApiKey | None:
    """As api_key_get_active; a cached key costs no thread hop."""
    digest = api_key_digest(clear_key)
    version = await config_version_async()
    hit, api_key = _keys.get(digest, version)
    if not hit:
        api_key = await _api_key_read_async(digest)
        _keys.put(digest, version, api_key)
    return api_key


def app_get(*, app_id: uuid.UUID | str) -> App | None:
    """The app row, as cached for this process while the config version holds."""
    lookup = str(app_id)
    version = config_version()
    hit, app = _apps.get(lookup, version)
    if not hit:
        app = App.objects.filter(id=app_id).first()
        _apps.put(lookup, version, app)
    return app


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


def web_key_get(*, share_code: str) -> ApiKey | None:
    """The web-session key (with its app) of the app whose chat is served under this share
    code, or None: unknown code, chat not enabled, or the page never served yet."""
    version = config_version()
    hit, api_key = _web_apps.get(share_code, version)
    if not hit:
        api_key = _web_key_read(share_code)
        _web_apps.put(share_code, version, api_key)
    return api_key


_web_key_read_async = db_sync_to_async(_web_key_read)


async def web_key_get_async(*, share_code: str) -> ApiKey | None:
    version = await config_version_async()
    hit, api_key = _web_apps.get(share_code, version)
    if not hit:
        api_key = await _web_key_read_async(share_code)
        _web_apps.put(share_code, version, api_key)
    return api_key
