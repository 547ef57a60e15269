"""Request dependencies: the platform, one transaction per request, the acting Principal."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Form, Request
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import User
from minyun.core import audit
from minyun.core.errors import DomainError, Forbidden, Unauthenticated
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_session(platform: PlatformDep) -> Iterator[Session]:
    """The request's transaction; it commits when the route returns, before the response.

    Scope "function": FastAPI exits this dependency as soon as the route has built its
    response, before any byte is sent. So a change and its audit record are durable
    before the client hears of them, and a commit that fails answers a 500, never a 2xx.
    """
    with unit_of_work(platform.factory) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_actor(request: Request, session: SessionDep, platform: PlatformDep) -> Principal:
    """A bearer token (API clients) or the signed session cookie (browsers), else anonymous."""
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("use 'Authorization: Bearer <access token>'")
        try:
            return accounts.principal_from_token(
                session,
                platform.node_key,
                token.strip(),
                issuer=platform.settings.base_url,
                audience=platform.token_audience,
            )
        except DomainError as exc:
            exc.audit = audit.Pending(
                Principal.anonymous(),
                "auth.token-use",
                outcome=audit.Outcome.DENIED,
                detail=str(exc),
            )
            raise
    return browser_actor(request, session)


def browser_actor(request: Request, session: Session) -> Principal:
    """The signed-in user of the browser session, else anonymous."""
    user = current_user(request, session)
    if user is None:
        return Principal.anonymous()
    return accounts.principal_for(user)


def current_user(request: Request, session: Session) -> User | None:
    """The signed-in user of a browser session, if it is still active."""
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or not user.active:
        request.session.clear()
        return None
    return user


ActorDep = Annotated[Principal, Depends(get_actor)]


def require_user(actor: ActorDep) -> Principal:
    if not actor.authenticated:
        raise Unauthenticated("sign in first")
    return actor


UserDep = Annotated[Principal, Depends(require_user)]


def csrf_token(request: Request) -> str:
    """The browser session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if token is None:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def check_csrf(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "") -> None:
    """Every form post carries the session's token (synchronizer-token pattern); audited if not."""
    expected = request.session.get("csrf")
    if not expected or not csrf or not secrets.compare_digest(str(expected), csrf):
        error = Forbidden(
            "the form has expired or did not come from this site; reload and try again",
            code="csrf",
        )
        error.audit = audit.Pending(
            Principal.anonymous(),
            "web.csrf",
            target=request.url.path,
            outcome=audit.Outcome.DENIED,
            detail="form post without a valid CSRF token",
        )
        raise error


CsrfDep = Depends(check_csrf)
