"""An app's end users as Dify names them: UUIDs for the `user` strings (models.EndUser)."""

import uuid

from django.utils import timezone

from apps.applications.models import EndUser
from apps.core.errors import NotFound


class EndUserNotFound(NotFound):
    code = "end_user_not_found"
    default_message = "End user not found."


def end_user_record(*, app_id: uuid.UUID, external_id: str) -> EndUser:
    """The end user's row, made on first use and stamped as seen: one statement, and two
    requests recording the same end user at once both succeed."""
    now = timezone.now()
    row = EndUser(
        id=EndUser.id_for(app_id, external_id),
        app_id=app_id,
        external_id=external_id,
        created_at=now,
        updated_at=now,
    )
    EndUser.objects.bulk_create(
        [row],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=["updated_at"],
    )
    return row


def end_user_get(*, app_id: uuid.UUID, end_user_id: str) -> EndUser:
    """The app's end user; another app's, an unknown or a malformed id: EndUserNotFound (404)."""
    try:
        found = uuid.UUID(end_user_id)
    except ValueError:
        raise EndUserNotFound() from None
    end_user = EndUser.objects.filter(id=found, app_id=app_id).first()
    if end_user is None:
        raise EndUserNotFound()
    return end_user
