"""Request dependencies: the platform, one transaction per request, the acting Principal."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Form, Path, Request
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import User
from minyun.core import audit
from minyun.core.errors import DomainError, Forbidden, Unauthenticated
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.throttle import DenialBudget
from minyun.core.uow import unit_of_work

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]

# Every integer a route takes is bounded by what the column it meets holds (or a tighter
# domain bound), so 2^63 answers 422 instead of an OverflowError from the database driver.
INT32_MAX = 2**31 - 1
"""PostgreSQL INTEGER: row ids, lake versions, offsets."""
INT64_MAX = 2**63 - 1
"""SQLite INTEGER and PostgreSQL BIGINT: audit sequence numbers."""
IdPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="a row id")]


def get_session(request: Request, platform: PlatformDep) -> Iterator[Session]:
    """The request's transaction; it commits when the route returns, before the response.

    Scope "function": FastAPI exits this dependency as soon as the route has built its
    response, before any byte is sent. So a change and its audit record are durable
    before the client hears of them, and a commit that fails answers a 500, never a 2xx.
    An anonymous caller's refusal is audited within its address's budget (screen_denial).
    """
    with unit_of_work(platform.factory) as session:
        try:
            yield session
        except DomainError as exc:
            if exc.audit is not None:
                exc.audit = screen_denial(request, exc.audit)
            raise


def screen_denial(request: Request, entry: audit.Pending) -> audit.Pending | None:
    """The audit entry to write for a refusal; an anonymous caller's within its address's budget.

    Refusals of signed-in users and clients are always recorded. An anonymous caller's
    address gets DenialBudget.limit records (20 a minute); then one record saying the rest are
    counted; the next recorded refusal from it carries the count.
    """
    budget: DenialBudget | None = getattr(request.app.state, "denials", None)
    if entry.actor.authenticated or budget is None:
        return entry
    address = request.client.host if request.client else "unknown"
    admission = budget.admit(address)
    if admission.verdict == "record":
        if not admission.counted:
            return entry
        note = f"{admission.counted} earlier refusals from this address counted, not recorded"
        return replace(entry, detail=f"{entry.detail}; {note}" if entry.detail else note)
    if admission.verdict == "announce":
        return audit.Pending(
            Principal.anonymous(),
            "auth.refusals-counted",
            target=address[:64],
            target_type="address",
            detail=(
                f"more than {budget.limit} refusals from this address: "
                "further ones are counted, not recorded one by one"
            ),
        )
    return None


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_actor(request: Request, session: SessionDep, platform: PlatformDep) -> Principal:
    """A bearer token (API clients) or the browser session's user, else anonymous.

    A change (POST, PUT, PATCH, DELETE) made with the session cookie must prove it comes
    from this site: the session's CSRF token in `X-CSRF-Token`, or an Origin (else Referer)
    equal to MINYUN_BASE_URL. Bearer tokens are not sent by browsers on their own: no check.
    """
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
    """The signed-in user of the browser session, else anonymous; a change needs check_same_site."""
    user = current_user(request, session)
    if user is None:
        return Principal.anonymous()
    actor = accounts.principal_for(user)
    if request.method not in SAFE_METHODS:
        check_same_site(request, actor, get_platform(request).settings.base_url)
    return actor


def current_user(request: Request, session: Session) -> User | None:
    """The signed-in user of a browser session, if the account is active and did not revoke it."""
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or not accounts.session_is_valid(user, request.session.get("signed_in_at")):
        request.session.clear()  # the store forgets it; the cookie is expired
        return None
    return user


def check_same_site(request: Request, actor: Principal, base_url: str) -> None:
    """Forbidden unless a cookie-authenticated change carries the CSRF token or our origin."""
    expected = request.session.get("csrf")
    sent = request.headers.get("x-csrf-token", "")
    if expected and sent and secrets.compare_digest(str(expected), sent):
        return
    origin = request.headers.get("origin") or _origin_of(request.headers.get("referer", ""))
    if origin and _origin_of(origin) == _origin_of(base_url):
        return
    error = Forbidden(
        "a change made with the session cookie needs the X-CSRF-Token header "
        "or a request from this site",
        code="csrf",
    )
    error.audit = audit.Pending(
        actor,
        "web.csrf",
        target=request.url.path[:200],
        outcome=audit.Outcome.DENIED,
        detail=f"{request.method} without CSRF token, origin {origin or 'none'}"[:200],
    )
    raise error


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


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
