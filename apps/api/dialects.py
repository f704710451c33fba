"""Which API a route speaks: each view declares it (apps.interface.views), and whoever answers
for a route before its view runs (the edge's refusals) asks the URLconf, built from the one list
of routes (apps.interface.urls)."""

import enum
from collections.abc import Callable
from typing import Any

from django.urls import Resolver404, get_resolver


class Dialect(enum.StrEnum):
    DIFY = "dify"
    OPENAI = "openai"


DIALECT_ATTRIBUTE = "speaks"


def dialect_declare(view: Callable[..., Any], dialect: Dialect) -> None:
    setattr(view, DIALECT_ATTRIBUTE, dialect)


def route_dialect(path: str) -> Dialect:
    """The dialect of the route at `path`; Dify's (the platform's own) for any other path."""
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return Dialect.DIFY
    return Dialect(getattr(match.func, DIALECT_ATTRIBUTE, Dialect.DIFY))
