"""Which servers a deployment may send its key to: PROVIDER_BASE_URL_ALLOWED.

Each entry is a URL prefix (`https://api.openai.com/v1`, `http://vllm.internal:8000/`,
`http://127.0.0.1:*` for any port). A base URL is allowed when its scheme, host and port are
exactly an entry's (an entry without a port allows the scheme's default one only) and its path
starts with the entry's path at a `/` boundary: `https://api.openai.com` never allows
`https://api.openai.com.example.net` nor `https://api.openai.com@example.net`. URLs with user
info, a query or a fragment are refused.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class BaseUrlRefused(ValueError):
    """A base URL the operator does not allow, or one that is not a plain http(s) URL."""


@dataclass(frozen=True)
class _Prefix:
    scheme: str
    host: str
    port: int | None  # None: any port (an entry's `:*`)
    path: str


def _parse(url: str, *, entry: bool = False) -> _Prefix:
    url = url.strip()
    any_port = False
    if entry:
        head, sep, tail = url.partition("://")
        netloc, slash, path = tail.partition("/")
        if sep and netloc.endswith(":*"):
            any_port = True
            url = f"{head}://{netloc[:-2]}{slash}{path}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise BaseUrlRefused(f"{url!r} is not a URL: {error}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise BaseUrlRefused(f"{url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise BaseUrlRefused(f"{url!r} carries user info; put credentials in the key field")
    if parts.query or parts.fragment:
        raise BaseUrlRefused(f"{url!r} has a query or fragment")
    path = parts.path.rstrip("/")
    if any_port:
        return _Prefix(parts.scheme, parts.hostname.lower(), None, path)
    return _Prefix(parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme], path)


def base_url_check(url: str, allowed: list[str] | tuple[str, ...]) -> None:
    """Raise BaseUrlRefused unless `url` is inside one of the `allowed` prefixes."""
    candidate = _parse(url)
    for entry in allowed:
        try:
            prefix = _parse(entry, entry=True)
        except BaseUrlRefused:
            continue  # a malformed entry allows nothing
        if (prefix.scheme, prefix.host) != (candidate.scheme, candidate.host):
            continue
        if prefix.port is not None and prefix.port != candidate.port:
            continue
        if candidate.path == prefix.path or candidate.path.startswith(prefix.path + "/"):
            return
    raise BaseUrlRefused(
        f"{url} is not an allowed provider server: the operator allows "
        f"{', '.join(allowed) or 'none'} (PROVIDER_BASE_URL_ALLOWED)"
    )
