"""Insert several new rows of different models in one SQL statement (data-modifying CTEs).

The request path records a conversation, a message, a task and its first event together. With
the ORM that is BEGIN, four INSERTs (each compiled afresh) and COMMIT: six round trips. One
statement is one round trip, atomic on its own, and its foreign keys are checked at its end, so
rows may point to each other in any order.
"""

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import AutoField, Model


def insert_together(
    *instances: Model, then: str = "SELECT 1", then_params: Sequence[Any] = ()
) -> None:
    """INSERT each unsaved instance, all or none, in one statement; `then` is the statement's
    final query (it runs in the same round trip).

    Field defaults and `auto_now_add` values are filled in on the instances as `save()` would
    (so `created_at` is readable afterwards); auto-increment keys are left to the database and
    are not read back. Inside a caller's transaction, a failure (a unique key, say) aborts that
    transaction: callers that want to go on use a savepoint.
    """
    parts: list[str] = []
    params: list[Any] = []
    for index, instance in enumerate(instances):
        meta = instance._meta
        columns, placeholders = [], []
        for field in meta.concrete_fields:
            if isinstance(field, AutoField) and getattr(instance, field.attname) is None:
                continue
            value = field.pre_save(instance, add=True)
            assert field.column is not None  # concrete fields have a column
            columns.append(connection.ops.quote_name(field.column))
            placeholders.append("%s")
            params.append(field.get_db_prep_save(value, connection))
        parts.append(
            f"i{index} AS (INSERT INTO {connection.ops.quote_name(meta.db_table)}"
            f" ({', '.join(columns)}) VALUES ({', '.join(placeholders)}))"
        )
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} {then}", [*params, *then_params])
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias
