"""Fixtures: database tests run on SQLite and on a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from minyun.core.config import Settings, load_settings
from minyun.core.db import make_engine, migrate
from minyun.core.jobs import Dispatcher
from minyun.core.keys import NodeKey, load_node_key
from minyun.core.platform import Platform

# Property tests draw the same examples on every run: a red CI can be reproduced, and a
# change is judged on the same cases as the one before. Set HYPOTHESIS_PROFILE=explore to
# draw new ones locally.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` first (in their own order), then the rest. Under pytest-xdist's
    worksteal scheduling (`make test`) one worker starts a long test while the others take
    the rest, so no long test runs alone at the end of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


PG_ADMIN = os.environ.get("MINYUN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


class PostgresDatabases:
    """Creates throwaway databases on the local server and drops them at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def create(self) -> str:
        name = f"minyun_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(PG_ADMIN)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def node_key(tmp_path_factory: pytest.TempPathFactory) -> NodeKey:
    return load_node_key(tmp_path_factory.mktemp("node"))


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One migrated database per backend for the whole run."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'minyun.db'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine, node_key: NodeKey) -> Iterator[Session]:
    """A session whose work is rolled back after the test (savepoints inside)."""
    connection = engine.connect()
    outer = connection.begin()
    db = Session(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        info={"node_key": node_key, "jobs": Dispatcher.foreground()},
    )
    try:
        yield db
    finally:
        db.close()
        outer.rollback()
        connection.close()


def make_settings(var_dir: Path, **overrides: object) -> Settings:
    return load_settings(var_dir=var_dir, **overrides)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A whole embedded node (SQLite + var folder) that really commits."""
    node = Platform.open(make_settings(tmp_path / "var"))
    node.migrate()
    yield node
    node.close()


@pytest.fixture
def pg_platform(tmp_path: Path, pg_databases: PostgresDatabases) -> Iterator[Platform]:
    """A whole node on a fresh PostgreSQL database that really commits."""
    node = Platform.open(make_settings(tmp_path / "var", database_url=pg_databases.create()))
    node.migrate()
    yield node
    node.close()


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A node's var folder made by `minyun init`, with the environment pointing at it (CLI tests)."""
    from typer.testing import CliRunner

    from minyun.cli import app

    var = tmp_path / "var"
    monkeypatch.setenv("MINYUN_VAR_DIR", str(var))
    for name in ("MINYUN_DATABASE_URL", "MINYUN_JOBS_MODE", "MINYUN_LAKE_URI"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    return var


@pytest.fixture
def server(platform: Platform) -> Iterator[str]:
    """The embedded node's app served on a free local port (browser tests)."""
    from minyun.web.app import create_app
    from tests.browser import serve

    with serve(create_app(platform)) as base:
        yield base
