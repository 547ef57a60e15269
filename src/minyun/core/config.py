"""Configuration from the environment (prefix MINYUN_) and ./var defaults."""

from __future__ import annotations

import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from minyun.core.errors import ConfigError


class EventsBackend(StrEnum):
    DB = "db"
    NATS = "nats"


class JobsMode(StrEnum):
    INLINE = "inline"
    WORKER = "worker"


class Settings(BaseSettings):
    """Every knob of a minyun node. Unknown MINYUN_ variables are an error."""

    model_config = SettingsConfigDict(env_prefix="MINYUN_", extra="forbid")

    var_dir: Path = Path("var")
    database_url: str = ""
    lake_uri: str = ""
    events_backend: EventsBackend = EventsBackend.DB
    nats_url: str = "nats://127.0.0.1:4222"
    # Webhook URLs on loopback or private addresses (a department's intranet receiver):
    # refused unless the node allows them, so a subscription cannot probe the node's network.
    webhooks_allow_private: bool = False
    jobs_mode: JobsMode = JobsMode.INLINE
    # A running job whose heartbeat is older than this (seconds) is taken to have lost its
    # runner; its runner beats several times within it, whatever the job's steps do.
    jobs_stale_after: float = Field(default=60.0, gt=0)
    # A job whose runner died this many times (e.g. the input kills the process) fails
    # with the reason and is never run again.
    jobs_max_crashes: int = Field(default=3, ge=1)
    secret_key: str = Field(default="", repr=False)
    base_url: str = "http://127.0.0.1:8000"
    node_name: str = "fujian-province"
    token_ttl_seconds: int = Field(default=900, gt=0, le=86400)
    login_attempts_per_minute: int = Field(default=5, gt=0)
    rate_limit_uri: str = "memory://"
    # Where browser sessions live: empty for the control-plane database, redis://… in production.
    session_uri: str = ""
    default_locale: str = "zh_Hans_CN"
    # Largest file a load accepts by upload or URL download (bytes); 1 GiB by default.
    upload_max_bytes: int = Field(default=1 << 30, gt=0)
    # Hours an uploaded file is kept after its load settled (committed, unchanged, refused
    # or failed); 0 deletes it at once. Uploads hold departments' raw records.
    upload_retention_hours: float = Field(default=0.0, ge=0)
    # Folders a batch subscription may deliver into (separated by the OS path separator),
    # each with everything under it; empty: `<var_dir>/outbox` only.
    exchange_folders: str = ""
    # What issuing departments' first e-licence keys sign with: Ed25519, or SM2 (GB/T 32918)
    # for a national-standard deployment. A department changes its own by a key rotation.
    licence_key_algorithm: Literal["Ed25519", "SM2"] = "Ed25519"
    # The engine of entity resolution (`minyun subjects resolve`): DuckDB in-process, or Apache
    # Spark (local, or the cluster SPARK_MASTER names) at province scale. Same model, same job.
    subjects_engine: Literal["duckdb", "spark"] = "duckdb"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("database_url must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("session_uri")
    @classmethod
    def _known_session_store(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("session_uri must be empty (the database) or a redis:// URL")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    def resolved(self) -> Settings:
        """Fill the defaults that live under var_dir; create the secret key once."""
        var = self.var_dir.resolve()
        var.mkdir(parents=True, exist_ok=True)
        database_url = self.database_url or f"sqlite:///{var / 'minyun.db'}"
        lake_uri = self.lake_uri or str(var / "lake")
        secret_key = self.secret_key or _load_or_create_secret(var / "secret.key")
        return self.model_copy(
            update={
                "var_dir": var,
                "database_url": database_url,
                "lake_uri": lake_uri,
                "secret_key": secret_key,
            }
        )

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def _load_or_create_secret(path: Path) -> str:
    # The key is made on this machine on first run and never leaves ./var (not in git).
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a malformed value becomes one clear ConfigError."""
    try:
        return Settings(**overrides).resolved()  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"MINYUN_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
