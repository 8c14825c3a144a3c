"""Fixtures: every database test runs on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests import support
from tests.scheduling import TellWorkersTheDist, deal_slow_tests_first, worksteal_workers
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(TellWorkersTheDist(), "tradepilot-worker-dist")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = worksteal_workers(config)
    if workers > 1:
        items[:] = deal_slow_tests_first(items, workers)


def _require_or_skip(env: str, what: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if support.services_required():
        pytest.fail(f"{what} is required in CI but {env} is not set")
    pytest.skip(f"{what} not configured: set {env}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> support.SqliteTemplate:
    return support.SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[support.PostgresWorkerDatabase]:
    url = _require_or_skip(support.PG_ENV, "PostgreSQL")
    db = support.PostgresWorkerDatabase(url)
    yield db
    db.drop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def database_url(db_backend: str, request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    if db_backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        yield template.fresh(tmp_path)
    else:
        pg: support.PostgresWorkerDatabase = request.getfixturevalue("postgres_database")
        await pg.truncate()
        yield pg.url


@pytest.fixture
def redis_url() -> str:
    return _require_or_skip(support.REDIS_ENV, "Redis")


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return support.make_settings(database_url, data_dir=tmp_path / "var")


@pytest.fixture
async def app(settings: Settings):  # type: ignore[no-untyped-def]
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def runtime(app):  # type: ignore[no-untyped-def]
    return app.state.runtime
