"""The client's address and scheme (REMOTE_ADDR, `is_secure()`), believed from forwarded headers
only when a trusted proxy sent them.

Anyone can write `X-Forwarded-For: 203.0.113.9`; a server that believes it from everybody hands
every client the address it likes, and with it a fresh per-address budget on each request. So an
ASGI layer in front of the platform reads the forwarded headers only when the peer is one of
TRUSTED_PROXIES (addresses or networks), and removes them from every other peer's request, so
nothing downstream (Django's SECURE_PROXY_SSL_HEADER among it) can be fooled either.

Each proxy appends the address it saw to X-Forwarded-For, so the header is read from the right:
the client is the first address that is not a trusted proxy, and whatever the client wrote
itself (further left) never counts. daphne's own `--proxy-headers` believes any peer and takes
the leftmost address, the one the client wrote: it is not used.
"""

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Scope = dict[str, Any]
Asgi = Callable[[Scope, Any, Any], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

FORWARDED_HEADERS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-forwarded-host",
        b"x-real-ip",
    }
)
SECURE = {"http": "https", "ws": "wss"}


def trusted_networks(values: Iterable[str]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value)
    except ValueError as error:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {error}") from None


def _address(text: str) -> Address | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.9:443
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: Address | None, networks: tuple[Network, ...]) -> bool:
    return ip is not None and any(ip in network for network in networks)


def forwarded_client(peer: str, forwarded_for: list[str], networks: tuple[Network, ...]) -> str:
    """The client's address: the peer's unless it is a trusted proxy, else the rightmost address
    of X-Forwarded-For that is not one (a malformed entry stops the walk at the proxy that
    passed it on: nothing it vouched for is left to read)."""
    client = peer
    if not _trusted(_address(peer), networks):
        return client
    entries = [entry for value in forwarded_for for entry in value.split(",") if entry.strip()]
    for entry in reversed(entries):
        ip = _address(entry)
        if ip is None:
            return client
        client = str(ip)
        if not _trusted(ip, networks):
            return client
    return client


class ForwardedHeadersMiddleware:
    """The ASGI layer: the scope's `client` and `scheme` from trusted proxies' headers; the
    headers themselves removed from anyone else's request."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.networks = trusted_networks(settings.TRUSTED_PROXIES)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = self._scoped(scope)
        await self.app(scope, receive, send)

    def _scoped(self, scope: Scope) -> Scope:
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        if not _trusted(_address(peer), self.networks):
            kept = [
                (name, value) for name, value in headers if name.lower() not in FORWARDED_HEADERS
            ]
            return scope if len(kept) == len(headers) else {**scope, "headers": kept}
        forwarded_for = [v.decode("latin-1") for n, v in headers if n.lower() == b"x-forwarded-for"]
        updated = dict(scope)
        address = forwarded_client(peer, forwarded_for, self.networks)
        if address != peer:
            updated["client"] = [address, 0]
        protos = [v.decode("latin-1") for n, v in headers if n.lower() == b"x-forwarded-proto"]
        if protos and protos[-1].split(",")[-1].strip().lower() == "https":
            scheme = str(scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http"))
            updated["scheme"] = SECURE.get(scheme, scheme)
        return updated
