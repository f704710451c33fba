"""Which budget a request at the API edge spends.

A request that names no caller spends the budget of its client address, before anything else.
One that names a caller (an `Authorization` header, a chat's `X-App-Code`) is authenticated
first; only a caller that checks out spends the platform's ceiling (with its key's and its end
user's budgets, apps.gateway.admission.rate_limit). Any other (an unknown key, a bad scheme, a
code without its session, a route it never got to) spends its address's budget afterwards, and
is answered 429 instead once that is empty. So a flood of wrong keys from one address empties
that address's budget, never every tenant's ceiling.

Authentication says a caller checked out through `caller_checked`, on the request's
`EdgeCharge` (a context variable the edge sets for the request).
"""

from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass
class EdgeCharge:
    """What the edge learns about one request while it is served."""

    caller_checked: bool = False


_charge: ContextVar[EdgeCharge | None] = ContextVar("edge_charge", default=None)


def charge_open() -> tuple[EdgeCharge, Token[EdgeCharge | None]]:
    charge = EdgeCharge()
    return charge, _charge.set(charge)


def charge_close(token: Token[EdgeCharge | None]) -> None:
    _charge.reset(token)


def caller_checked() -> None:
    """The request's credential checked out (a no-op outside the edge: a WebSocket frame)."""
    charge = _charge.get()
    if charge is not None:
        charge.caller_checked = True
