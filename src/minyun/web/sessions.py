"""Browser sessions kept on the server: the cookie carries only a random id.

What a session holds (the signed-in user, the CSRF token, the language) lives in the
control-plane database (table `web_sessions`) or, with MINYUN_SESSION_URI=redis://…, in
Redis. Signing out deletes it there, so a cookie copied before stops working at once; the
user or an administrator revokes every session of an account (`accounts.service.revoke_sessions`).

The store is keyed by the SHA-256 of the cookie value: reading the table or Redis gives no
cookie anyone could present. What changed is saved in a short transaction of its own just
before the response starts (the request's transaction has committed by then).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import datetime, timedelta
from typing import Any, Protocol

import redis
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minyun.accounts.models import WebSession
from minyun.core import clock

COOKIE = "minyun_session"
# A signed-in session ends 8 hours after sign-in; a visitor's (the sign-in form's CSRF token,
# the language) after 2 hours, so crawlers do not fill the store for long.
MAX_AGE = timedelta(hours=8)
ANONYMOUS_MAX_AGE = timedelta(hours=2)
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
_UNSET = object()


def digest(cookie: str) -> str:
    """The store's key of a cookie value."""
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionData(dict[str, Any]):
    """A session's values; remembers whether they changed and which stored ids to delete."""

    def __init__(
        self,
        values: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        super().__init__(values or {})
        self.key = key  # the stored id; None until a new session is saved
        self.expires_at = expires_at
        self.modified = False
        self.retired: list[str] = []

    def __setitem__(self, name: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(name, value)

    def __delitem__(self, name: str) -> None:
        self.modified = True
        super().__delitem__(name)

    def clear(self) -> None:
        self.modified = self.modified or bool(self)
        super().clear()

    def pop(self, name: str, default: Any = _UNSET) -> Any:
        self.modified = self.modified or name in self
        return super().pop(name) if default is _UNSET else super().pop(name, default)

    def setdefault(self, name: str, default: Any = None) -> Any:
        if name not in self:
            self.modified = True
        return super().setdefault(name, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.modified = True
        super().update(*args, **kwargs)

    def restart(self) -> None:
        """Start a new session under a new id (sign-in, sign-out); the old one is deleted."""
        if self.key is not None:
            self.retired.append(self.key)
        self.key = None
        self.expires_at = None
        self.clear()
        self.modified = True


def of(request: Request) -> SessionData:
    """The request's session (the middleware puts one on every HTTP request)."""
    data = request.session
    if not isinstance(data, SessionData):
        raise TypeError("ServerSessions middleware is not installed")
    return data


class SessionStore(Protocol):
    def load(self, key: str) -> tuple[dict[str, Any], datetime] | None:
        """The values and expiry of a live session, else None."""

    def save(self, key: str, values: dict[str, Any], expires_at: datetime) -> None:
        """Create or replace a session."""

    def delete(self, key: str) -> None:
        """Forget a session."""


class DatabaseStore:
    """Sessions in the control-plane database (the embedded default)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def load(self, key: str) -> tuple[dict[str, Any], datetime] | None:
        with self._factory() as s:
            row = s.get(WebSession, key)
            if row is None or row.expires_at <= clock.now():
                return None
            return dict(row.data), row.expires_at

    def save(self, key: str, values: dict[str, Any], expires_at: datetime) -> None:
        with self._factory.begin() as s:
            self._save(s, key, values, expires_at)

    def delete(self, key: str) -> None:
        with self._factory.begin() as s:
            s.execute(delete(WebSession).where(WebSession.id == key))

    @staticmethod
    def _save(s: Session, key: str, values: dict[str, Any], expires_at: datetime) -> None:
        user_id = values.get("user_id")
        row = s.get(WebSession, key)
        if row is None:
            # New sessions sweep out expired ones (indexed), so the table holds live ones only.
            s.execute(delete(WebSession).where(WebSession.expires_at <= clock.now()))
            s.add(
                WebSession(
                    id=key,
                    user_id=user_id if isinstance(user_id, int) else None,
                    data=values,
                    expires_at=expires_at,
                )
            )
        else:
            row.data = values
            row.user_id = user_id if isinstance(user_id, int) else None


class RedisStore:
    """Sessions in Redis (production: shared by every process, expired by Redis itself)."""

    PREFIX = "minyun:session:"

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)

    def load(self, key: str) -> tuple[dict[str, Any], datetime] | None:
        raw = self._redis.get(self.PREFIX + key)
        if raw is None:
            return None
        doc = json.loads(raw)
        expires_at = datetime.fromisoformat(doc["expires_at"])
        if expires_at <= clock.now():
            return None
        return dict(doc["values"]), expires_at

    def save(self, key: str, values: dict[str, Any], expires_at: datetime) -> None:
        seconds = max(1, int((expires_at - clock.now()).total_seconds()))
        doc = {"values": values, "expires_at": expires_at.isoformat()}
        self._redis.set(self.PREFIX + key, json.dumps(doc), ex=seconds)

    def delete(self, key: str) -> None:
        self._redis.delete(self.PREFIX + key)


def store_for(session_uri: str, factory: sessionmaker[Session]) -> SessionStore:
    """Redis for a redis:// URI, else the control-plane database."""
    return RedisStore(session_uri) if session_uri else DatabaseStore(factory)


def _idle(data: SessionData, had_cookie: bool) -> bool:
    """Whether `ServerSessions._commit` has nothing to store, delete or send (an API call
    with a bearer token, a page that did not touch its session): no thread, no store."""
    if data.retired:
        return False
    if not data:
        return data.key is None and not had_cookie
    return data.key is not None and not data.modified


class ServerSessions:
    """ASGI middleware: `request.session` from the store, saved before the response starts."""

    def __init__(self, app: ASGIApp, *, store: SessionStore, https_only: bool = False) -> None:
        self.app = app
        self.store = store
        self.https_only = https_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cookie = None
        if not scope["path"].startswith("/static/"):
            cookie = HTTPConnection(scope).cookies.get(COOKIE)
        data = await self._load(cookie)
        scope["session"] = data

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and not _idle(data, cookie is not None):
                header = await run_in_threadpool(self._commit, data, cookie is not None)
                if header is not None:
                    MutableHeaders(scope=message).append("set-cookie", header)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _load(self, cookie: str | None) -> SessionData:
        if not cookie or not _COOKIE_VALUE.match(cookie):
            return SessionData()
        key = digest(cookie)
        found = await run_in_threadpool(self.store.load, key)
        if found is None:
            return SessionData()
        values, expires_at = found
        return SessionData(values, key=key, expires_at=expires_at)

    def _commit(self, data: SessionData, had_cookie: bool) -> str | None:
        """Store what changed; the Set-Cookie header to send, if any."""
        for old in data.retired:
            self.store.delete(old)
        if not data:
            if data.key is not None:
                self.store.delete(data.key)
            return self._cookie("", 0) if had_cookie else None
        if data.key is not None:
            if data.modified and data.expires_at is not None:
                self.store.save(data.key, dict(data), data.expires_at)
            return None
        cookie = secrets.token_urlsafe(32)
        lifetime = MAX_AGE if "user_id" in data else ANONYMOUS_MAX_AGE
        data.key, data.expires_at = digest(cookie), clock.now() + lifetime
        self.store.save(data.key, dict(data), data.expires_at)
        return self._cookie(cookie, int(lifetime.total_seconds()))

    def _cookie(self, value: str, max_age: int) -> str:
        parts = [f"{COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
        if max_age == 0:
            parts.append("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
        if self.https_only:
            parts.append("Secure")
        return "; ".join(parts)
