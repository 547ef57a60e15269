"""Server-rendered pages: one Jinja2 environment per locale, the `render` helper, the viewer.

Every page module renders through `render`, which adds what the base layout needs: the
signed-in user, the CSRF token, the locale and its gettext functions, the request id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.templating import Jinja2Templates

from minyun.accounts import service as accounts
from minyun.core.security import Principal, decide
from minyun.web import i18n
from minyun.web.deps import SessionDep, csrf_token, current_user
from minyun.web.i18n import N_

WEB = Path(__file__).parent
# The shared templates first, then each domain package's own templates/ folder.
_DOMAIN_TEMPLATES = WEB.parent.glob("*/templates")
TEMPLATE_DIRS = [WEB / "templates", *sorted(p for p in _DOMAIN_TEMPLATES if p.parent != WEB)]
CHINA_TIME = timezone(timedelta(hours=8), "CST")
# Nothing loads from elsewhere; styles allow inline for charts and htmx's indicator style.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)

# Display names of stored values (roles, states, levels, kinds); translated when shown.
LABELS: dict[str, str] = {
    "admin": N_("Administrator"),
    "steward": N_("Data steward"),
    "approver": N_("Approver"),
    "consumer": N_("Data consumer"),
    "auditor": N_("Auditor"),
    "operator": N_("Monitoring operator"),
    "staff": N_("Civil servant"),
    "citizen": N_("Citizen"),
    "enterprise": N_("Enterprise"),
    "queued": N_("Queued"),
    "running": N_("Running"),
    "succeeded": N_("Succeeded"),
    "failed": N_("Failed"),
    "cancelled": N_("Cancelled"),
    "success": N_("Success"),
    "denied": N_("Denied"),
    "province": N_("Province"),
    "city": N_("City"),
    "county": N_("County"),
    "township": N_("Township"),
    "village": N_("Village"),
    "department": N_("Department"),
    "unit": N_("Unit"),
}

# The navigation: (path, label, the action a viewer must be allowed to see it).
NAV: list[tuple[str, str, str | None]] = [
    ("/", N_("Home"), None),
    ("/catalog", N_("Catalog"), "catalog.read"),
    ("/eco", N_("Air quality"), "eco.read"),
    ("/orgs", N_("Organisations"), "org.read"),
    ("/jobs", N_("Jobs"), "jobs.read"),
    ("/audit", N_("Audit log"), "audit.read"),
    ("/admin", N_("Administration"), "user.manage"),
]


@dataclass(frozen=True)
class Viewer:
    """The signed-in user as the layout shows them (plain data: safe after the session ends)."""

    username: str
    display_name: str
    kind: str
    roles: tuple[str, ...]
    may: frozenset[str]


def page_actor(request: Request, session: SessionDep) -> Principal:
    """The browser session's user as a Principal; remembers the Viewer for the layout."""
    user = current_user(request, session)
    if user is None:
        return Principal.anonymous()
    actor = accounts.principal_for(user)
    actions = {action for _path, _label, action in NAV if action is not None}
    request.state.viewer = Viewer(
        username=user.username,
        display_name=user.display_name,
        kind=user.kind,
        roles=tuple(sorted(user.roles)),
        may=frozenset(a for a in actions if decide(session, actor, a).allowed),
    )
    return actor


PageActorDep = Annotated[Principal, Depends(page_actor)]


def request_locale(request: Request) -> str:
    """The visitor's chosen locale, else the node's default (Simplified Chinese)."""
    chosen = request.session.get("locale")
    if chosen in i18n.LOCALES:
        return str(chosen)
    platform = getattr(request.app.state, "platform", None)
    return i18n.normalize(platform.settings.default_locale if platform else None)


def gettext_for(request: Request) -> Callable[[str], str]:
    """The gettext function of the request's locale, for messages made in Python."""
    gettext: Callable[[str], str] = i18n.translations(request_locale(request)).gettext
    return gettext


def is_local_path(target: str | None) -> bool:
    """Whether `target` is a path on this site (no scheme, host, or `//` / backslash tricks)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(ord(c) < 32 for c in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def local_or_home(target: str | None) -> str:
    """`target` if it is a local path, else the home page."""
    return target if target and is_local_path(target) else "/"


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S")


@lru_cache(maxsize=len(i18n.LOCALES))
def templates_for(locale: str) -> Jinja2Templates:
    """The Jinja2 templates of one locale (autoescaped, gettext installed), built once."""
    translations = i18n.translations(locale)
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIRS),
        autoescape=True,
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = _when
    env.filters["label"] = lambda value: translations.gettext(LABELS.get(str(value), str(value)))
    return Jinja2Templates(env=env)


class _LazyCsrfToken:
    """The session's CSRF token, made only when a page shows a form: a visitor's page without
    one starts no server-side session."""

    def __init__(self, request: Request) -> None:
        self._request = request

    def __str__(self) -> str:
        return csrf_token(self._request)

    def __html__(self) -> str:
        return str(self)


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a page with the layout's context: viewer, CSRF token, locale, request id."""
    locale = request_locale(request)
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    signed_in = viewer is not None or "user_id" in request.session
    path = request.url.path
    nav = [
        {"href": href, "label": label, "current": path == href or path.startswith(href + "/")}
        for href, label, action in NAV
        if action is None or (viewer is not None and action in viewer.may)
    ]
    page: dict[str, Any] = {
        "viewer": viewer,
        "signed_in": signed_in,
        "nav": nav if signed_in else [],
        "csrf_token": _LazyCsrfToken(request),
        "locale": locale,
        "html_lang": i18n.html_lang(locale),
        "request_id": getattr(request.state, "request_id", ""),
        "here": path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    }
    response_headers = {"Content-Security-Policy": CSP, **(headers or {})}
    if signed_in:
        response_headers.setdefault("Cache-Control", "no-store")
    return templates_for(locale).TemplateResponse(
        request, template, page, status_code=status_code, headers=response_headers
    )


def is_htmx(request: Request) -> bool:
    """Whether htmx asked for a fragment (not when it restores history: that needs the page)."""
    headers = request.headers
    return headers.get("hx-request") == "true" and "hx-history-restore-request" not in headers
