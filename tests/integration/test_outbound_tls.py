"""The outbound guard over real TLS: it connects to the vetted address while the Host header,
SNI and the certificate check keep the URL's name; a certificate for another name fails."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tradepilot.core.outbound import OutboundClient, OutboundFailed, OutboundPolicy

NAME = "hooks.example.test"
ALIAS = "alias.example.test"  # resolves to the same address, but the certificate does not name it


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsServer:
    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.sni: list[str | None] = []
        self.hosts: list[str] = []
        self.context.sni_callback = lambda sock, server_name, ctx: self.sni.append(server_name)
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> TlsServer:
        app = web.Application()

        async def hook(request: web.Request) -> web.Response:
            self.hosts.append(request.headers["Host"])
            return web.json_response({"ok": True})

        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[tuple[TlsServer, Path]]:
    cert, key = self_signed(tmp_path, NAME)
    server = await TlsServer(cert, key).start()
    yield server, cert
    await server.stop()


def client_for(server: TlsServer, trusted: Path) -> OutboundClient:
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host in (NAME, ALIAS) else []

    policy = OutboundPolicy(allowed_hosts=frozenset({f"{NAME}:{server.port}", f"{ALIAS}:{server.port}"}),
                            require_https=True, verify=ssl.create_default_context(cafile=str(trusted)))
    return OutboundClient(policy, resolver=resolve)


async def test_pinned_address_keeps_host_sni_and_certificate_name(tls: tuple[TlsServer, Path]) -> None:
    server, cert = tls
    client = client_for(server, cert)
    answer = await client.request("POST", f"https://{NAME}:{server.port}/hook", json={"x": 1})
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert server.sni == [NAME] and server.hosts == [f"{NAME}:{server.port}"]


async def test_a_certificate_for_another_name_fails(tls: tuple[TlsServer, Path]) -> None:
    server, cert = tls
    with pytest.raises(OutboundFailed) as failed:  # same trusted certificate and address, another name
        await client_for(server, cert).request("POST", f"https://{ALIAS}:{server.port}/hook", json={})
    assert failed.value.code == "outbound_network" and "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
    assert server.sni == [ALIAS] and server.hosts == []
