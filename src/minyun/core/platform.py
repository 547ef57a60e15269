"""A running minyun node: settings, database, node key, job dispatcher, throttle, audit appender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from minyun.core.audit import HEADS_FILE, GroupAppender, HeadsLog
from minyun.core.config import Settings
from minyun.core.db import make_engine, make_sessionmaker, migrate
from minyun.core.jobs import Dispatcher, Limits
from minyun.core.keys import NodeKey, load_node_key
from minyun.core.lake import Lake
from minyun.core.quotas import quotas_for
from minyun.core.throttle import Throttle, login_throttle


@dataclass
class Platform:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    node_key: NodeKey
    dispatcher: Dispatcher
    throttle: Throttle
    lake: Lake
    audit_appender: GroupAppender
    audit_heads: HeadsLog

    @classmethod
    def open(cls, settings: Settings, *, run_jobs_here: bool = True) -> Platform:
        """Connect to the control plane; inline jobs run in threads of this process if
        `run_jobs_here`, else in the foreground: the caller runs what
        `dispatcher.take_pending()` gives (see `jobs.run_pending`)."""
        engine = make_engine(settings.database_url)
        node_key = load_node_key(settings.var_dir)
        limits = Limits(
            stale_after=timedelta(seconds=settings.jobs_stale_after),
            max_crashes=settings.jobs_max_crashes,
        )
        mode = settings.jobs_mode.value
        if mode == "inline" and not run_jobs_here:
            mode = "foreground"
        dispatcher = Dispatcher(mode, limits=limits)
        heads = HeadsLog(settings.var_dir / HEADS_FILE)
        # One per process; its thread starts with the first read it records.
        appender = GroupAppender(engine, node_key=node_key, heads=heads)
        factory = make_sessionmaker(
            engine, node_key=node_key, jobs=dispatcher, audit_appender=appender, audit_heads=heads,
            quotas=quotas_for(settings.rate_limit_uri, settings.node_name),
            settings=settings,
        )  # fmt: skip
        if mode == "inline":
            dispatcher.factory = factory
        throttle = login_throttle(settings.rate_limit_uri, settings.login_attempts_per_minute)
        lake = Lake(settings.lake_uri)
        return cls(settings, engine, factory, node_key, dispatcher, throttle, lake, appender, heads)

    def migrate(self) -> None:
        """Bring the control-plane schema up to date."""
        migrate(self.engine)

    @property
    def token_audience(self) -> str:
        return f"{self.settings.base_url}/api"

    def close(self) -> None:
        self.dispatcher.shutdown()
        self.audit_appender.close()
        self.audit_heads.close()
        self.engine.dispose()
