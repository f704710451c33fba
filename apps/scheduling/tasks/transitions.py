"""The guarded status update and its TaskEvent in one SQL statement.

This is the scheduler's hot path (two transitions per task). The ORM version (lock, update,
re-read, insert) took five round trips and ~1 ms of query compilation each; one statement with
data-modifying CTEs does the same atomically in one round trip.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.scheduling.models import Task, TaskEvent


@dataclass(frozen=True)
class Increment:
    """Add to the column's current value (e.g. attempts + 1)."""

    by: int = 1


_TASK_FIELDS = list(Task._meta.concrete_fields)
_COLUMNS = {field.name: field for field in _TASK_FIELDS}
_TASK_TABLE = Task._meta.db_table
_EVENT_TABLE = TaskEvent._meta.db_table


def guarded_update(
    *,
    task_id: uuid.UUID | str,
    from_statuses: tuple[str, ...],
    to_status: str,
    reason: str,
    actor: str,
    detail: dict[str, Any],
    fields: dict[str, Any],
    now: datetime | None = None,
    attempt: int | None = None,
) -> Task | None:
    """UPDATE the task WHERE its status is one of `from_statuses` (and, for a worker's write,
    its attempt is still `attempt`: the fencing token), record the event, return the updated
    row; None when the guard lost (another actor moved the task first, or a later attempt
    replaced this one)."""
    assignments = ["status = %s"]
    params: list[Any] = [to_status]
    for name, value in fields.items():
        field = _COLUMNS[name]
        if isinstance(value, Increment):
            assignments.append(f"{field.column} = t.{field.column} + %s")
            params.append(value.by)
        else:
            assignments.append(f"{field.column} = %s")
            params.append(field.get_db_prep_save(value, connection))
    returning = ", ".join(f"t.{field.column}" for field in _TASK_FIELDS)
    fenced = "" if attempt is None else "AND attempts = %s"
    sql = f"""
        WITH old AS (
            SELECT id, status FROM {_TASK_TABLE}
            WHERE id = %s AND status = ANY(%s) {fenced} FOR UPDATE
        ), updated AS (
            UPDATE {_TASK_TABLE} t SET {", ".join(assignments)} FROM old WHERE t.id = old.id
            RETURNING {returning}, old.status AS from_status
        ), event AS (
            INSERT INTO {_EVENT_TABLE}
                (task_id, at, from_status, to_status, reason, attempt, worker_name, detail)
            SELECT id, %s, from_status, %s, %s, attempts, %s, %s::jsonb FROM updated
        )
        SELECT * FROM updated
    """
    all_params = [
        str(task_id),
        list(from_statuses),
        *([] if attempt is None else [attempt]),
        *params,
        now or timezone.now(),
        to_status,
        reason[:255],
        actor,
        json.dumps(detail),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(_TASK_FIELDS, row[: len(_TASK_FIELDS)], strict=True)
    ]
    return Task.from_db(connection.alias, [field.attname for field in _TASK_FIELDS], values)
