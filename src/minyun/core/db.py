"""Control-plane database: one SQLAlchemy engine, typed ORM, Alembic migrations."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use minyun.core.clock")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def libpq_url(url: str) -> str:
    """A PostgreSQL URL as libpq and asyncpg take it: `postgresql+psycopg://…` without the
    driver's name."""
    return "postgresql://" + url.split("://", 1)[1]


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the control plane; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A page cache of up to 64 MiB per connection (SQLite's default is 2 MiB), taken only as
    # pages are read: a bulk write into indexed tables (a first resolution's millions of
    # subject links) otherwise rereads its index pages from the OS, twice as slowly.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # Writers queue on the database lock at BEGIN instead of failing at their first write.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine, **info: Any) -> sessionmaker[Session]:
    """Sessions that keep loaded objects after commit; `info` reaches every session."""
    return sessionmaker(engine, expire_on_commit=False, info=info)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def on_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run `fn` once the session's transaction has committed; never if it rolls back."""
    session.info.setdefault("on_commit", []).append(fn)


def _run_commit_hooks(session: Session) -> None:
    # The transaction is already committed: a failing hook is logged, never raised into
    # the code that committed (that would report a committed change as failed).
    for fn in session.info.pop("on_commit", []):
        try:
            fn()
        except Exception:
            log.exception("an after-commit hook failed")


def _drop_commit_hooks(session: Session) -> None:
    session.info.pop("on_commit", None)


event.listen(Session, "after_commit", _run_commit_hooks)
event.listen(Session, "after_soft_rollback", lambda session, _tx: _drop_commit_hooks(session))
