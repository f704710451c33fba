"""How the admin shows empty values, durations and moments (shared by the apps' admins)."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.utils import timezone

EMPTY = "—"


def seconds_display(seconds: float | None) -> str:
    """A duration for people: "0.123 s", or a dash when there is none."""
    return EMPTY if seconds is None else f"{seconds:.3f} s"


def moment_display(moment: datetime | None) -> str:
    """A time to the millisecond: the default admin format stops at minutes, too coarse to read a
    task's timeline."""
    if moment is None:
        return EMPTY
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local:%Z}"


def moment_column(name: str) -> Callable[[Any, Any], str]:
    """A read-only admin column showing the datetime field `name` with moment_display."""

    @admin.display(description=name.replace("_", " "), ordering=name)
    def column(model_admin: Any, obj: Any) -> str:
        return moment_display(getattr(obj, name))

    return column
