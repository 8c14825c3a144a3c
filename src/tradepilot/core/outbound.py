"""The one guard for HTTP calls to hosts a user supplied (webhooks, Web Push endpoints).

A URL a user typed must not make the server talk to itself, its private network or a cloud
metadata service (SSRF). So every such call:

1. is ``https`` (``http`` too outside production), with a host and no credentials in the URL;
2. resolves the host **once** and refuses it unless every address is public (v4 and v6:
   loopback, private, link-local, CGNAT 100.64/10, multicast, unspecified, reserved,
   documentation ranges, and v4 addresses hidden in v6 — ``::ffff:127.0.0.1``, 6to4, NAT64,
   Teredo — are all refused);
3. connects to **that vetted address** (the URL's host is replaced by the IP, ``Host`` and TLS
   SNI keep the name, certificates are checked against the name), so a second DNS answer
   (rebinding) cannot switch the target;
4. never follows a redirect (a 3xx is refused: it could point anywhere), ignores proxy
   environment variables, and caps the response size and the total time.

Hosts in ``TRADEPILOT_OUTBOUND_ALLOWED_HOSTS`` (the operator's allow-list; ``host`` or
``host:port``) skip the public-address check only — they are still resolved once and pinned.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

if TYPE_CHECKING:
    from tradepilot.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


class OutboundError(Exception):
    """An outbound call did not produce a usable answer. ``code`` is stable, for logs and APIs."""

    permanent = False

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class OutboundRefused(OutboundError):
    """The guard refused the call (the URL or its addresses are not allowed): retrying cannot help."""

    permanent = True


class OutboundFailed(OutboundError):
    """The call was allowed but failed (network, time or size cap): may work later."""


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = address_refusal(embedded)
            return f"embeds {embedded}: {reason}" if reason else None
        if ip in _UNIQUE_LOCAL:
            return "unique local (fc00::/7)"
    else:
        if ip in _CGNAT:
            return "shared address space (CGNAT 100.64.0.0/10)"
    for reason, flag in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                         ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                         ("reserved", ip.is_reserved), ("private", ip.is_private)):
        if flag:
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a v6 address stands for (mapped, 6to4, NAT64, Teredo client), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 0xFFFF:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@functools.cache
def default_tls_context() -> ssl.SSLContext:
    """The system's CAs (certifi), built once: building it per client costs ~0.1-0.2 s."""
    return httpx.create_ssl_context()


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (TCP)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundFailed(f"cannot resolve {host}: {exc.strerror}", code="outbound_unresolvable") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allowed_hosts: frozenset[str] = frozenset()
    require_https: bool = True
    timeout_seconds: float = 10.0
    max_response_bytes: int = 256 * 1024
    verify: Any = True  # TLS verification: True (the system's CAs) or an ssl.SSLContext (tests: a local CA)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(allowed_hosts=frozenset(h.lower() for h in settings.outbound_allowed_hosts),
                   require_https=settings.env == "production",
                   timeout_seconds=settings.outbound_timeout_seconds,
                   max_response_bytes=settings.outbound_max_response_bytes)

    def allows_host(self, host: str, port: int) -> bool:
        return host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts


@dataclass(frozen=True, slots=True)
class VettedTarget:
    """A URL checked by the guard, and the one address the call will connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def pinned_url(self) -> str:
        """The URL with the host replaced by the vetted address."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return urlunsplit((parts.scheme, f"{literal}:{self.port}", parts.path or "/", parts.query, ""))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status_code: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.content or b"null")

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class OutboundClient:
    """Makes guarded calls: ``await client.request("POST", url, json=...)``."""

    def __init__(self, policy: OutboundPolicy, *, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver or system_resolver

    async def vet(self, url: str) -> VettedTarget:
        """Check the URL and resolve it once; raises OutboundRefused (or OutboundFailed if DNS fails)."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise OutboundRefused("not a valid URL", code="outbound_invalid_url") from None
        scheme = parts.scheme.lower()
        allowed_schemes = ("https",) if self.policy.require_https else ("https", "http")
        if scheme not in allowed_schemes:
            raise OutboundRefused(f"the URL must use {' or '.join(allowed_schemes)}", code="outbound_scheme")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise OutboundRefused("the URL has no host", code="outbound_invalid_url")
        if parts.username is not None or parts.password is not None:
            raise OutboundRefused("credentials in the URL are not allowed", code="outbound_invalid_url")
        port = port or (443 if scheme == "https" else 80)
        addresses = [host] if _is_ip_literal(host) else await self.resolver(host, port)
        if not addresses:
            raise OutboundFailed(f"{host} has no address", code="outbound_unresolvable")
        if not self.policy.allows_host(host, port):
            for raw in addresses:
                reason = address_refusal(ipaddress.ip_address(raw.split("%")[0]))
                if reason is not None:
                    raise OutboundRefused(f"{host} resolves to a non-public address ({reason})",
                                          code="outbound_address_refused")
        return VettedTarget(url=url.strip(), scheme=scheme, host=host, port=port, address=addresses[0])

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, json: Any = None) -> OutboundResponse:
        """Vet, connect to the vetted address, and read at most the size cap within the time cap."""
        target = await self.vet(url)
        send_headers = {**(headers or {}), "Host": target.host_header}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with asyncio.timeout(self.policy.timeout_seconds):
                return await self._send(method, target, send_headers, extensions, content, json)
        except TimeoutError:
            raise OutboundFailed(f"no answer within {self.policy.timeout_seconds:g} s",
                                 code="outbound_timeout") from None
        except httpx.HTTPError as exc:
            raise OutboundFailed(f"{type(exc).__name__}: {exc}", code="outbound_network") from None

    async def _send(self, method: str, target: VettedTarget, headers: dict[str, str], extensions: dict[str, Any],
                    content: bytes | None, json: Any) -> OutboundResponse:
        timeout = httpx.Timeout(self.policy.timeout_seconds)
        verify = default_tls_context() if self.policy.verify is True else self.policy.verify
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout,
                                     verify=verify) as client:
            request = client.build_request(method, target.pinned_url, headers=headers, content=content, json=json,
                                           extensions=extensions)
            response = await client.send(request, stream=True)
            try:
                if response.is_redirect or 300 <= response.status_code < 400:
                    raise OutboundRefused(f"redirects are not followed (HTTP {response.status_code})",
                                          code="outbound_redirect_refused")
                body = await self._read_capped(response)
            finally:
                await response.aclose()
        return OutboundResponse(response.status_code, response.headers, body)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.policy.max_response_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise OutboundFailed(f"the answer is larger than {cap} bytes", code="outbound_too_large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise OutboundFailed(f"the answer is larger than {cap} bytes", code="outbound_too_large")
            chunks.append(chunk)
        return b"".join(chunks)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def outbound_client(runtime: Any) -> OutboundClient:
    """The process's guarded client (``runtime.services["outbound"]``), made from settings once."""
    client = runtime.services.get("outbound")
    if client is None:
        client = runtime.services["outbound"] = OutboundClient(OutboundPolicy.from_settings(runtime.settings))
    return client  # type: ignore[no-any-return]

