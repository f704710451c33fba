"""Reading batches and their files: always within one app."""

import uuid
from dataclasses import dataclass
from typing import TypeVar

from django.db.models import QuerySet

from apps.batches.ids import BATCH_PREFIX, FILE_PREFIX, row_id
from apps.batches.models import Batch
from apps.batches.services import BatchNotFound
from apps.files.errors import FileNotFound
from apps.files.models import FilePurpose, StoredFile
from apps.files.selectors import file_get, files_of

# The files OpenAI's routes serve: batch input and output (an end user's chat uploads are
# Dify's, at /v1/files/{id}/preview).
BATCH_PURPOSES = (FilePurpose.BATCH, FilePurpose.BATCH_OUTPUT, FilePurpose.BATCH_ERROR)


Row = TypeVar("Row", Batch, StoredFile)


def _after(rows: QuerySet[Row], reference: Row, *, newest_first: bool) -> QuerySet[Row]:
    """The rows strictly after `reference` in (created_at, id) order (OpenAI's `after`)."""
    if newest_first:
        return rows.filter(created_at__lte=reference.created_at).exclude(
            created_at=reference.created_at, id__gte=reference.id
        )
    return rows.filter(created_at__gte=reference.created_at).exclude(
        created_at=reference.created_at, id__lte=reference.id
    )


def batch_get(*, app_id: uuid.UUID, batch_id: str) -> Batch:
    found = row_id(BATCH_PREFIX, batch_id)
    batch = (
        Batch.objects.select_related("app").filter(id=found, app_id=app_id).first()
        if found
        else None
    )
    if batch is None:
        raise BatchNotFound(f"No batch found with id '{batch_id}'.")
    return batch


@dataclass(frozen=True)
class BatchPage:
    rows: list[Batch]
    has_more: bool


def batches_page(*, app_id: uuid.UUID, after: str | None, limit: int) -> BatchPage:
    """The app's batches, newest first, after the batch `after` names (OpenAI's paging)."""
    rows = Batch.objects.select_related("app").filter(app_id=app_id).order_by("-created_at", "-id")
    if after:
        rows = _after(rows, batch_get(app_id=app_id, batch_id=after), newest_first=True)
    fetched = list(rows[: limit + 1])
    return BatchPage(fetched[:limit], len(fetched) > limit)


def batch_file_get(*, app_id: uuid.UUID, file_id: str) -> StoredFile:
    """One of the app's batch files (input or output), by its OpenAI id (404 otherwise)."""
    found = row_id(FILE_PREFIX, file_id)
    if found is None:
        raise FileNotFound(f"No such file: '{file_id}'.")
    file = file_get(app_id=app_id, file_id=found, end_user="")
    if file.purpose not in BATCH_PURPOSES:
        raise FileNotFound(f"No such file: '{file_id}'.")
    return file


@dataclass(frozen=True)
class FilePage:
    rows: list[StoredFile]
    has_more: bool


def batch_files_page(
    *, app_id: uuid.UUID, purpose: str | None, after: str | None, limit: int, newest_first: bool
) -> FilePage:
    rows = files_of(app_id=app_id, end_user="").filter(purpose__in=BATCH_PURPOSES)
    if purpose is not None:
        rows = rows.filter(purpose__in=purpose_values(purpose))
    if not newest_first:
        rows = rows.order_by("created_at", "id")
    if after:
        reference = batch_file_get(app_id=app_id, file_id=after)
        rows = _after(rows, reference, newest_first=newest_first)
    fetched = list(rows[: limit + 1])
    return FilePage(fetched[:limit], len(fetched) > limit)


# OpenAI's purposes of batch files, as stored (its batch_output covers both output files).
PURPOSES = {
    "batch": (FilePurpose.BATCH,),
    "batch_output": (FilePurpose.BATCH_OUTPUT, FilePurpose.BATCH_ERROR),
}


def purpose_values(purpose: str) -> tuple[str, ...]:
    return tuple(str(value) for value in PURPOSES.get(purpose, ()))


def openai_purpose(file: StoredFile) -> str:
    return "batch" if file.purpose == FilePurpose.BATCH else "batch_output"
