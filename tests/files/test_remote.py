"""Files by URL (apps.files.remote): fetched only from public addresses, the check made on the
address actually connected to (after DNS, on every redirect), within limits of size and time."""

import asyncio
import ipaddress
import socket

import pytest

from apps.files.remote import (
    AddressPolicy,
    Fetched,
    RemoteFileRefused,
    RemoteFileUnavailable,
    networks_parse,
    remote_fetch,
    url_check,
)
from tests.files.samples import png
from tests.files.servers import FileServer, Route, endless, slow

NOBODY = AddressPolicy()
LOOPBACK = AddressPolicy(networks_parse(["127.0.0.0/8"]))


def fetch(url: str, policy: AddressPolicy = LOOPBACK, **limits: float) -> Fetched:
    return asyncio.run(
        remote_fetch(
            url,
            max_bytes=int(limits.get("max_bytes", 1_000_000)),
            policy=policy,
            timeout_s=limits.get("timeout_s", 5.0),
            max_redirects=int(limits.get("max_redirects", 3)),
        )
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata services
        "100.64.0.1",  # shared address space
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert not NOBODY.allows(address)


def test_public_addresses_and_allowed_networks_pass() -> None:
    assert NOBODY.allows("93.184.215.14")
    assert NOBODY.allows("2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    intranet = AddressPolicy(networks_parse(["10.0.0.0/8"]))
    assert intranet.allows("10.9.8.7")
    assert not intranet.allows("192.168.0.1")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/a.png", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///a.png", "no host"),
        ("http://user:secret@example.com/a.png", "credentials"),
        ("http://localhost/a.png", "this machine"),
        ("http://localhost./a.png", "this machine"),
        ("http://api.localhost/a.png", "this machine"),
        ("http://127.0.0.1/a.png", "not a public address"),
        ("http://[::1]:8080/a.png", "not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("http://example.com:99999/a.png", "not valid"),
        ("http://example.com/" + "a" * 2100, "longer than"),
    ],
)
def test_urls_refused_without_any_network(url: str, problem: str) -> None:
    with pytest.raises(RemoteFileRefused, match=problem):
        url_check(url, NOBODY)


def test_urls_are_made_ascii() -> None:
    checked = url_check("https://bücher.example/ein bild.png?q=ä", NOBODY)
    assert checked == "https://xn--bcher-kva.example/ein%20bild.png?q=%C3%A4"


def test_a_file_is_fetched_from_an_allowed_network() -> None:
    image = png()
    with FileServer({"/cat.png": (200, {"Content-Type": "image/png"}, image)}) as server:
        fetched = fetch(f"{server.url}/cat.png")
    assert (fetched.content, fetched.mime_type, fetched.filename) == (image, "image/png", "cat.png")


def test_a_name_that_resolves_to_this_machine_is_refused_when_connecting() -> None:
    """The URL's name passes the checks a web process can make; its address does not."""
    host = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    assert not any(ipaddress.ip_address(address).is_global for address in resolved)
    with FileServer({"/cat.png": (200, {}, png())}, host="0.0.0.0") as server:
        url = f"http://{host}:{server.port}/cat.png"
        url_check(url, NOBODY)  # nothing wrong with the URL itself
        with pytest.raises(RemoteFileRefused, match="not a public address"):
            fetch(url, NOBODY)
        assert server.requested == []


def test_every_redirect_is_checked_again() -> None:
    routes = {
        "/literal": (302, {"Location": "http://10.0.0.1/a.png"}, b""),
        "/local": (301, {"Location": "http://localhost/a.png"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/moved": (307, {"Location": "/cat.png"}, b""),
        "/cat.png": (200, {"Content-Type": "image/png"}, png()),
    }
    with FileServer(routes) as server:
        with pytest.raises(RemoteFileRefused, match=r"10\.0\.0\.1 is not a public address"):
            fetch(f"{server.url}/literal")
        with pytest.raises(RemoteFileRefused, match="this machine"):
            fetch(f"{server.url}/local")
        with pytest.raises(RemoteFileRefused, match="more than 3 redirects"):
            fetch(f"{server.url}/loop")
        assert fetch(f"{server.url}/moved").filename == "cat.png"


def test_size_time_and_status_limits() -> None:
    routes: dict[str, Route] = {
        "/declared": (200, {"Content-Length": "5000000"}, b""),
        "/endless": endless,
        "/slow": slow(3.0),
        "/gone": (404, {}, b""),
        "/broken": (503, {}, b""),
    }
    with FileServer(routes) as server:
        with pytest.raises(RemoteFileRefused, match="larger than 1000000 bytes"):
            fetch(f"{server.url}/declared")
        with pytest.raises(RemoteFileRefused, match="larger than 1000000 bytes"):
            fetch(f"{server.url}/endless")
        with pytest.raises(RemoteFileUnavailable, match=r"within 0\.5 s"):
            fetch(f"{server.url}/slow", timeout_s=0.5)
        with pytest.raises(RemoteFileRefused, match="answered 404"):
            fetch(f"{server.url}/gone")
        with pytest.raises(RemoteFileUnavailable, match="answered 503"):
            fetch(f"{server.url}/broken")


def test_nobody_listening_is_worth_another_attempt() -> None:
    with FileServer({}) as server:
        url = f"{server.url}/a.png"
    with pytest.raises(RemoteFileUnavailable):
        fetch(url)
