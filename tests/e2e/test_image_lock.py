"""The image's lock file works: installed into a fresh virtualenv exactly as ``deploy/Dockerfile``
does (hash-checked, no dependency resolution, then the project without its dependencies), the
set is consistent (``pip check``) and runs TradePilot: migrations, the API, the health probe.

A lock that misses a package, pins two incompatible versions or carries a wrong hash fails
here instead of in the first ``docker build`` on a server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.deploy_support import DEPLOY, ROOT
from tests.e2e.servers import free_port, server_env

pytestmark = pytest.mark.slow


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, check=False, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{' '.join(argv[:4])}…\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result  # type: ignore[no-any-return]


@pytest.mark.timeout(1500)
def test_lock_file_installs_into_a_fresh_virtualenv_and_runs_the_app(tmp_path: Path) -> None:
    started = time.monotonic()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    pip, python = str(venv / "bin" / "pip"), str(venv / "bin" / "python")
    # the Dockerfile's steps: the lock first (hash-checked, nothing resolved), then the project.
    # --no-compile: the image compiles bytecode at install; here it would only double the time
    _run([pip, "install", "--quiet", "--no-compile", "--require-hashes", "--no-deps", "-r",
          str(DEPLOY / "requirements.lock")], timeout=1200)
    source = tmp_path / "build"  # what the Dockerfile COPYs, so the work tree gets no build output
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([pip, "install", "--quiet", "--no-compile", "--no-deps", str(source)], timeout=600)
    _run([pip, "check"], timeout=120)
    installed = time.monotonic() - started

    workdir = tmp_path / "run"
    workdir.mkdir()
    port = free_port()
    env = server_env(database_url=f"sqlite+aiosqlite:///{workdir / 'tp.db'}", data_dir=str(workdir / "var"),
                     port=str(port))
    _run([python, "-m", "tradepilot", "migrate"], env=env, cwd=workdir, timeout=300)
    log = (workdir / "serve.log").open("w")
    server = subprocess.Popen([python, "-m", "tradepilot", "serve"], env=env, cwd=workdir, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (workdir / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (workdir / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        probe = subprocess.run([python, "-m", "tradepilot", "healthcheck", "--ready"], env=env, cwd=workdir,
                               check=False, capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"\nlock installed in {installed:.0f} s; whole test {time.monotonic() - started:.0f} s")
