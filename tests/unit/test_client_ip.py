import ipaddress

from tradepilot.core.http import client_ip

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


def test_peer_is_used_without_trusted_proxies() -> None:
    assert client_ip("198.51.100.4", "1.2.3.4", []) == "198.51.100.4"


def test_forwarded_for_ignored_from_untrusted_peer() -> None:
    assert client_ip("198.51.100.4", "1.2.3.4", PROXIES) == "198.51.100.4"


def test_rightmost_untrusted_hop_behind_trusted_proxies() -> None:
    # the client forged "6.6.6.6"; nginx appended the real address 203.0.113.9
    assert client_ip("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.5", PROXIES) == "203.0.113.9"


def test_garbage_in_chain_falls_back_to_peer() -> None:
    assert client_ip("10.0.0.2", "203.0.113.9, not-an-ip", PROXIES) == "10.0.0.2"


def test_all_hops_trusted_gives_leftmost() -> None:
    assert client_ip("127.0.0.1", "10.1.1.1", PROXIES) == "10.1.1.1"


def test_ipv6_peer() -> None:
    assert client_ip("2001:db8::1", None, PROXIES) == "2001:db8::1"
