"""The outbound guard: every class of non-public address is refused, v4 and v6, and what a
URL may look like; resolution through an injected resolver (a name that resolves to them)."""

from __future__ import annotations

import ipaddress

import pytest

from tradepilot.core.outbound import (
    OutboundClient,
    OutboundPolicy,
    OutboundRefused,
    address_refusal,
)

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "",
    "192.0.2.10": "",  # TEST-NET-1 (documentation)
    "198.18.0.1": "",  # benchmarking
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.1.2.3": "private",
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::a9fe:a9fe": "link-local",  # NAT64 of 169.254.169.254
    "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
    "2001:db8::1": "",  # documentation
    "::127.0.0.1": "loopback",  # deprecated IPv4-compatible
}
PUBLIC = ["93.184.216.34", "1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e",
          "::ffff:8.8.8.8", "100.128.0.1"]


@pytest.mark.parametrize("raw", sorted(REFUSED))
def test_non_public_addresses_are_refused(raw: str) -> None:
    reason = address_refusal(ipaddress.ip_address(raw))
    assert reason is not None
    assert REFUSED[raw].lower() in reason.lower()


@pytest.mark.parametrize("raw", PUBLIC)
def test_public_addresses_pass(raw: str) -> None:
    assert address_refusal(ipaddress.ip_address(raw)) is None


def resolver_of(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]
    return resolve


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    client = OutboundClient(OutboundPolicy(require_https=False), resolver=resolver_of({
        "hooks.example.com": ["93.184.216.34", "10.0.0.7"],  # one bad answer is enough
        "rebind.example.com": ["::ffff:127.0.0.1"],
        "ok.example.com": ["93.184.216.34"],
    }))
    for url in ("https://hooks.example.com/x", "http://rebind.example.com/", "http://10.0.0.1/",
                "http://[::1]:8080/", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(OutboundRefused) as refused:
            await client.vet(url)
        assert refused.value.code == "outbound_address_refused"
    target = await client.vet("https://ok.example.com/api/webhooks/1/abc?wait=true")
    assert target.address == "93.184.216.34" and target.host_header == "ok.example.com"
    assert target.pinned_url == "https://93.184.216.34:443/api/webhooks/1/abc?wait=true"


async def test_localhost_really_resolves_and_is_refused() -> None:
    client = OutboundClient(OutboundPolicy(require_https=False))
    with pytest.raises(OutboundRefused) as refused:
        await client.vet("http://localhost:9/")
    assert "loopback" in str(refused.value)


async def test_url_shapes() -> None:
    strict = OutboundClient(OutboundPolicy(require_https=True), resolver=resolver_of({"a.example": ["1.1.1.1"]}))
    for url, code in (("http://a.example/", "outbound_scheme"), ("ftp://a.example/", "outbound_scheme"),
                      ("https:///nohost", "outbound_invalid_url"), ("https://u:p@a.example/", "outbound_invalid_url"),
                      ("https://a.example:99999/", "outbound_invalid_url"), ("file:///etc/passwd", "outbound_scheme")):
        with pytest.raises(OutboundRefused) as refused:
            await strict.vet(url)
        assert refused.value.code == code, url
    assert (await strict.vet("https://a.example/")).port == 443


async def test_allow_listed_hosts_skip_only_the_address_check() -> None:
    policy = OutboundPolicy(allowed_hosts=frozenset({"127.0.0.1:8081", "hooks.internal"}), require_https=False)
    client = OutboundClient(policy, resolver=resolver_of({"hooks.internal": ["10.1.1.1"]}))
    assert (await client.vet("http://127.0.0.1:8081/hook")).address == "127.0.0.1"
    assert (await client.vet("http://hooks.internal/x")).address == "10.1.1.1"  # still resolved and pinned
    with pytest.raises(OutboundRefused):
        await client.vet("http://127.0.0.1:8082/hook")  # another port of the host is not listed
    v6 = await OutboundClient(OutboundPolicy(allowed_hosts=frozenset({"::1"}), require_https=False)).vet(
        "http://[::1]:9000/p")
    assert v6.pinned_url == "http://[::1]:9000/p" and v6.host_header == "[::1]:9000"
