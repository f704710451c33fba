"""Files by URL reach only public addresses, including through the IPv6 forms that carry an IPv4
address (NAT64, 6to4) or that some networks route inside (IPv4-compatible, site-local); a refusal
never says what an internal name resolves to."""

import asyncio
import ipaddress
import socket

import pytest

from apps.files.remote import AddressPolicy, RemoteFileRefused, networks_parse, remote_fetch
from tests.files.samples import png
from tests.files.servers import FileServer

NOBODY = AddressPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
        "64:ff9b:1::808:808",  # the local-use NAT64 prefix: the site's own translator
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::808:808",  # IPv4-compatible, whatever it carries
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "fec0::1",  # site-local
        "fec0:1:2::3",
    ],
)
def test_ipv6_forms_that_lead_inside_are_refused(address: str) -> None:
    assert not NOBODY.allows(address)


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::808:808", "2002:808:808::1", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
)
def test_ipv6_forms_of_public_addresses_pass(address: str) -> None:
    """An IPv6-only network reaches IPv4 hosts through NAT64 (DNS64 answers 64:ff9b::...):
    a public address behind the well-known prefix is as public as itself."""
    assert NOBODY.allows(address)


def test_an_allowed_network_still_allows_its_own_embedded_forms() -> None:
    intranet = AddressPolicy(networks_parse(["10.0.0.0/8"]))
    assert intranet.allows("64:ff9b::a00:1")
    assert not intranet.allows("64:ff9b::c0a8:101")


def test_a_refusal_does_not_say_what_an_internal_name_resolves_to() -> None:
    host = socket.gethostname()
    resolved = {str(info[4][0]) for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    assert not any(ipaddress.ip_address(address).is_global for address in resolved)
    with FileServer({"/cat.png": (200, {}, png())}, host="0.0.0.0") as server:
        with pytest.raises(RemoteFileRefused) as refused:
            asyncio.run(
                remote_fetch(
                    f"http://{host}:{server.port}/cat.png",
                    max_bytes=1_000_000,
                    policy=NOBODY,
                    timeout_s=5.0,
                    max_redirects=0,
                )
            )
        assert server.requested == []
    message = str(refused.value)
    assert "not a public address" in message
    for address in resolved:
        assert address not in message
