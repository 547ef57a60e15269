"""HTML pages: home dashboard, sign-in and sign-out, language switch, error pages.

The domain packages' page routers are included here, so the app mounts one router.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from minyun.accounts import service as accounts
from minyun.admin.manage_pages import router as manage_pages
from minyun.admin.pages import router as admin_pages
from minyun.catalog.pages import router as catalog_pages
from minyun.core import clock
from minyun.core.errors import NotFound, TooManyRequests, Unauthenticated
from minyun.home import service as home_page
from minyun.orgs.pages import router as orgs_pages
from minyun.steward.pages import router as steward_pages
from minyun.web import i18n, sessions, wording
from minyun.web.deps import CsrfDep, PlatformDep, SessionDep, screen_denial
from minyun.web.i18n import N_
from minyun.web.templating import (
    PageActorDep,
    gettext_for,
    is_local_path,
    local_or_home,
    render,
    request_locale,
    when,
)

__all__ = ["error_page", "render", "router"]

router = APIRouter(include_in_schema=False)

# Titles of error pages (DomainError.title and HTTP reasons) and fixed details worth
# translating; any other detail is shown as the service wrote it.
ERROR_MESSAGES = [
    N_("Error"),
    N_("Request failed"),
    N_("Not found"),
    N_("Not Found"),
    N_("Authentication required"),
    N_("Forbidden"),
    N_("Conflict"),
    N_("Invalid input"),
    N_("Too many requests"),
    N_("Invalid configuration"),
    N_("Method Not Allowed"),
    N_("sign in first"),
    N_("Server error"),
    N_("the request could not be completed and nothing it changed was kept"),
    N_("the form has expired or did not come from this site; reload and try again"),
]
WRONG_PASSWORD = N_("Wrong username or password.")
THROTTLED = N_("Too many sign-in attempts. Wait a minute and try again.")


# What an error means, for a detail the pages cannot say in the visitor's language.
GENERIC_DETAIL = {
    400: N_("The request could not be done as it was asked."),
    401: N_("sign in first"),
    403: N_("This account may not do this."),
    404: N_("What you asked for is not here, or not visible to this account."),
    409: N_("This does not fit the current state: reload the page and look again."),
    413: N_("What was sent is too large."),
    422: N_("Some of what was entered is not valid: go back, correct it and try again."),
    429: N_("Too many requests. Wait a minute and try again."),
}
UNKNOWN_DETAIL = N_("The request could not be completed.")


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """The HTML form of an error (problems.py calls this for browsers).

    A detail the catalog and wording cannot say in the page's language is replaced by what
    its status means; the original stays folded away under "technical detail".
    """
    gettext = gettext_for(request)
    said = wording.say(detail, gettext, when)
    original = None
    if said == detail and request_locale(request) != "en" and re.search("[A-Za-z]{3}", detail):
        original = detail
        said = gettext(GENERIC_DETAIL.get(status, UNKNOWN_DETAIL))
    return render(
        request,
        "error.html",
        status_code=status,
        status=status,
        title=gettext(title),
        detail=said,
        original=original,
    )


@router.get("/")
def home(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The signed-in user's dashboard, or the public landing page."""
    board = home_page.home(session, actor)
    if board is None:
        return render(request, "landing.html", landing=home_page.landing(session, actor))
    return render(request, "home.html", board=board)


@router.get("/login")
def login_form(request: Request, actor: PageActorDep, next: str = "/") -> Response:
    """The sign-in form (a signed-in user goes straight on)."""
    if actor.authenticated:
        return RedirectResponse(local_or_home(next), 303)
    return render(request, "login.html", next=local_or_home(next), username="", message=None)


@router.post("/login", dependencies=[CsrfDep])
def login(
    request: Request,
    session: SessionDep,
    platform: PlatformDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password; on success start a fresh session and go to `next` if it is local."""
    try:
        user = accounts.authenticate(
            session,
            platform.throttle,
            username=username.strip(),
            password=password,
            client_ip=request.client.host if request.client else None,
        )
    except (Unauthenticated, TooManyRequests) as exc:
        # The form comes back with a message instead of an error page, so the refusal's
        # audit entry is written here; the failed sign-in changed nothing else.
        entry = screen_denial(request, exc.audit) if exc.audit is not None else None
        if entry is not None:
            entry.write(session)
        throttled = isinstance(exc, TooManyRequests)
        return render(
            request,
            "login.html",
            status_code=429 if throttled else 401,
            headers={"Retry-After": str(exc.extra["retry_after"])} if throttled else None,
            next=local_or_home(next),
            username=username,
            message=THROTTLED if throttled else WRONG_PASSWORD,
        )
    _restart_session(request)
    request.session["user_id"] = user.id
    request.session["signed_in_at"] = clock.now().timestamp()
    return RedirectResponse(local_or_home(next), 303)


@router.post("/logout", dependencies=[CsrfDep])
def logout(request: Request, session: SessionDep, actor: PageActorDep) -> Response:
    """End the browser session: deleted on the server, so a copy of the cookie is worthless."""
    if actor.authenticated:
        accounts.logout(session, actor)
    _restart_session(request)
    return RedirectResponse("/", 303)


@router.get("/lang/{locale}")
def switch_language(request: Request, locale: str, next: str | None = None) -> Response:
    """Show the pages in `locale` (zh or en) from now on, and go back where the visitor was."""
    if locale not in i18n.LOCALES:
        raise NotFound(f"no language {locale}")
    request.session["locale"] = locale
    return RedirectResponse(_back(request, next), 303)


def _restart_session(request: Request) -> None:
    # A new session id on every sign-in and sign-out (no fixation; the old one is deleted on
    # the server); the language choice stays.
    locale = request.session.get("locale")
    sessions.of(request).restart()
    if locale is not None:
        request.session["locale"] = locale


def _back(request: Request, next: str | None) -> str:
    if is_local_path(next):
        return str(next)
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc and referer.scheme == request.url.scheme:
        target = referer.path + (f"?{referer.query}" if referer.query else "")
        if is_local_path(target) and not target.startswith("/lang/"):
            return target
    return "/"


router.include_router(orgs_pages)
router.include_router(admin_pages)
router.include_router(manage_pages)
# The steward's routes first: /catalog/new is matched before /catalog/{code}.
router.include_router(steward_pages)
router.include_router(catalog_pages)
