"""Fetching a file by its URL (Dify's `remote_url`): in a worker, never in a web process, within
limits of size, time and redirects, and only from public addresses.

The address is checked where the connection is made (a network backend of our own under
httpcore): the name is resolved once, every address it resolves to must be allowed, and the
connection goes to the address that was checked, so a name that resolves differently a moment
later (DNS rebinding) gains nothing. TLS still verifies the certificate against the name in the
URL. Every redirect is a new URL, checked again the same way. Private, loopback, link-local,
shared and reserved addresses are refused unless the operator allows their network
(FILE_REMOTE_ALLOWED_NETWORKS), and so are the IPv6 forms that lead to them (NAT64 and 6to4 are
judged by the IPv4 address they carry).
"""

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import httpcore
from django.conf import settings

MAX_URL_CHARS = 2048
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = b"dify-platform (files by URL)"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RemoteFileRefused(Exception):
    """The URL or what it leads to is refused for good (its address, its size, a 404)."""


class RemoteFileUnavailable(Exception):
    """The file could not be fetched now (a timeout, a refused connection, a 5xx): another
    attempt may succeed."""


# IPv6 addresses that `is_global` passes but that lead inside on some networks, refused whatever
# they carry: IPv4-compatible (::a.b.c.d, deprecated, still routed to IPv4 by some stacks),
# IPv4-translated (::ffff:0:a.b.c.d, SIIT), site-local (fec0::/10, deprecated, routed within a
# site) and the local-use NAT64 prefix (RFC 8215: the site's own translator, whose mapping is
# its own).
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(network)
    for network in ("::/96", "::ffff:0:0:0/96", "fec0::/10", "64:ff9b:1::/48")
)
# The well-known NAT64 prefix (RFC 6052): a DNS64 network's way to IPv4, the address in the last
# 32 bits. It leads where that IPv4 address leads, so it is judged as that address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64 or 6to4 (2002::/16) address reaches, if it is one."""
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def from_settings(cls) -> "AddressPolicy":
        return cls(networks_parse(settings.FILE_REMOTE_ALLOWED_NETWORKS))

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(ip in network for network in self.allowed_networks):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            if any(ip in network for network in _REFUSED_V6):
                return False
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                return self.allows(str(embedded))
        return ip.is_global and not ip.is_multicast


def networks_parse(values: Iterable[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value)


def url_check(url: str, policy: AddressPolicy) -> str:
    """The URL in the ASCII form requests use, or RemoteFileRefused saying what is wrong with it.
    Needs no network: a web process checks what it can (the scheme, a literal address, a name
    for this host) before accepting a request, and the worker checks the rest."""
    if len(url) > MAX_URL_CHARS:
        raise RemoteFileRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise RemoteFileRefused(f"the URL is not valid: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise RemoteFileRefused("only http and https URLs are fetched")
    host = (parts.hostname or "").rstrip(".")  # "localhost." is localhost
    if not host:
        raise RemoteFileRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise RemoteFileRefused("URLs with credentials in them are not fetched")
    if host == "localhost" or host.endswith(".localhost"):
        raise RemoteFileRefused(f"{host} is this machine, not a public address")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not policy.allows(str(literal)):
        raise RemoteFileRefused(f"{host} is not a public address")
    try:
        ascii_host = host.encode("idna").decode("ascii") if literal is None else host
    except UnicodeError:
        raise RemoteFileRefused(f"{host!r} is not a valid host name") from None
    if literal is not None and literal.version == 6:
        ascii_host = f"[{ascii_host}]"
    netloc = ascii_host if port is None else f"{ascii_host}:{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    return urlunsplit((parts.scheme, netloc, path, query, ""))


class _GuardedNetwork(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows, to the very address it checked."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            if error.errno == socket.EAI_AGAIN:
                raise RemoteFileUnavailable(f"{host} could not be resolved now") from None
            raise RemoteFileRefused(f"{host} does not resolve") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        if not addresses or not all(self._policy.allows(address) for address in addresses):
            # Not which address: that would tell a caller what the platform's internal names
            # resolve to.
            raise RemoteFileRefused(f"{host} is not a public address (by what it resolves to)")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise RemoteFileUnavailable(f"{host} refused the connection: {failure}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RemoteFileRefused("not a network address")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@dataclass(frozen=True)
class Fetched:
    content: bytes
    mime_type: str  # from Content-Type, "" when the server sent none
    filename: str  # the last part of the (final) URL's path
    url: str  # after redirects


async def remote_fetch(
    url: str,
    *,
    max_bytes: int,
    policy: AddressPolicy,
    timeout_s: float,
    max_redirects: int,
) -> Fetched:
    """GET the URL, following at most `max_redirects` redirects, within `timeout_s` in all.

    Raises RemoteFileRefused (for good: a refused address, a body larger than `max_bytes`, a
    4xx) or RemoteFileUnavailable (for now: a timeout, a connection failure, a 5xx or 429)."""
    try:
        async with asyncio.timeout(timeout_s):
            network = _GuardedNetwork(policy)
            async with httpcore.AsyncConnectionPool(network_backend=network, retries=0) as pool:
                return await _follow(pool, url, max_bytes, policy, max_redirects)
    except TimeoutError:
        raise RemoteFileUnavailable(f"no complete answer within {timeout_s:g} s") from None
    except httpcore.TimeoutException:
        raise RemoteFileUnavailable("the server stopped answering") from None
    except httpcore.ProtocolError as error:
        raise RemoteFileUnavailable(f"the server's answer was broken: {error}") from None
    except (httpcore.NetworkError, httpcore.UnsupportedProtocol) as error:
        raise RemoteFileUnavailable(f"the server could not be reached: {error}") from None


async def _follow(
    pool: httpcore.AsyncConnectionPool,
    url: str,
    max_bytes: int,
    policy: AddressPolicy,
    max_redirects: int,
) -> Fetched:
    for _ in range(max_redirects + 1):
        target = url_check(url, policy)
        headers = [(b"User-Agent", USER_AGENT), (b"Accept", b"*/*")]
        async with pool.stream("GET", target, headers=headers) as response:
            status = response.status
            found = {name.lower(): value for name, value in response.headers}
            if status in REDIRECTS and b"location" in found:
                url = urljoin(target, found[b"location"].decode("latin-1"))
                continue
            if status == 429 or status >= 500:
                raise RemoteFileUnavailable(f"the server answered {status}")
            if status != 200:
                raise RemoteFileRefused(f"the server answered {status}")
            content = await _body(response, found, max_bytes)
        mime_type = found.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
        filename = unquote(urlsplit(target).path.rsplit("/", 1)[-1])
        return Fetched(content=content, mime_type=mime_type.lower(), filename=filename, url=target)
    raise RemoteFileRefused(f"more than {max_redirects} redirects")


async def _body(response: httpcore.Response, headers: dict[bytes, bytes], max_bytes: int) -> bytes:
    too_large = RemoteFileRefused(f"the file is larger than {max_bytes} bytes")
    declared = headers.get(b"content-length", b"").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in response.aiter_stream():  # type: ignore[union-attr]
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)
