"""Looking up keys."""

from apps.applications.models import ApiKey
from apps.applications.services import api_key_digest


def api_key_get_active(*, clear_key: str) -> ApiKey | None:
    """The key row (with its app) for a clear key, or None when unknown or revoked."""
    return (
        ApiKey.objects.select_related("app")
        .filter(digest=api_key_digest(clear_key), revoked_at__isnull=True)
        .first()
    )
