import ipaddress
import json
import subprocess
import sys

import pytest

from tradepilot.config import DEFAULT_SECRET_KEY, ConfigError, Settings, load_settings


def make(**kw: object) -> Settings:
    return load_settings(_env_file=None, **kw)


def test_defaults_are_the_embedded_mode() -> None:
    s = make()
    assert s.database_url.startswith("sqlite+aiosqlite")
    assert s.port == 8008 and s.redis_url is None


def test_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        make(port=70000, database_url="mysql://x")
    text = str(err.value)
    assert "TRADEPILOT_PORT" in text and "TRADEPILOT_DATABASE_URL" in text


def test_production_refuses_unsafe_settings() -> None:
    with pytest.raises(ConfigError) as err:
        make(env="production", debug=True, cors_origins="*")
    text = str(err.value)
    for name in ("TRADEPILOT_SECRET_KEY", "TRADEPILOT_DEBUG", "TRADEPILOT_CORS_ORIGINS", "TRADEPILOT_PUBLIC_URL",
                 "TRADEPILOT_ENCRYPTION_KEYS"):
        assert name in text
    assert DEFAULT_SECRET_KEY not in text


def test_production_accepts_safe_settings() -> None:
    from cryptography.fernet import Fernet

    s = make(env="production", secret_key="x" * 40, public_url="https://trade.example.com/",
             cors_origins="https://app.example.com", encryption_keys=Fernet.generate_key().decode())
    assert s.public_url == "https://trade.example.com"
    assert s.cors_origins == ["https://app.example.com"]


def test_trusted_proxies_parse_from_csv() -> None:
    s = make(trusted_proxies="10.0.0.0/8, 127.0.0.1")
    assert s.trusted_proxies == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


def test_config_check_masks_secrets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"TRADEPILOT_SECRET_KEY": "super-secret-value-1234567890abcdef",
           "TRADEPILOT_DATABASE_URL": "postgresql+asyncpg://bob:hunter2@db/tp", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "tradepilot", "config", "check"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert "super-secret-value" not in out.stdout and "hunter2" not in out.stdout
    shown = json.loads(out.stdout)
    assert shown["TRADEPILOT_SECRET_KEY"] == "********"
    assert shown["TRADEPILOT_DATABASE_URL"] == "postgresql+asyncpg://bob:********@db/tp"


def test_config_check_fails_with_clear_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"TRADEPILOT_ENV": "production", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "tradepilot", "config", "check"], env=env, cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "TRADEPILOT_SECRET_KEY" in out.stderr and "Traceback" not in out.stderr
