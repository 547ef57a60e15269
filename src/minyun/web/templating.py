"""Server-rendered pages: one Jinja2 environment per locale, the `render` helper, the viewer.

Every page module renders through `render`, which adds what the base layout needs: the
signed-in user, the CSRF token, the locale and its gettext functions, the request id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.templating import Jinja2Templates

from minyun.accounts import service as accounts
from minyun.core.security import Principal, decide
from minyun.web import i18n, wording
from minyun.web.deps import SessionDep, csrf_token, current_user
from minyun.web.i18n import N_

WEB = Path(__file__).parent
# The shared templates first, then each domain package's own templates/ folder.
_DOMAIN_TEMPLATES = WEB.parent.glob("*/templates")
TEMPLATE_DIRS = [WEB / "templates", *sorted(p for p in _DOMAIN_TEMPLATES if p.parent != WEB)]
# Pages show times in the province's time zone, whatever the server's (the `when` filter).
try:
    CHINA_TIME: tzinfo = ZoneInfo("Asia/Shanghai")
except ZoneInfoNotFoundError:  # no time-zone database here: the same offset, fixed since 1991
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
    # Job kinds.
    "ingest.load": N_("Data load"),
    "ingest.quality": N_("Quality report"),
    "serving.refresh": N_("Serving index refresh"),
    "demo.load": N_("Demo province load"),
    "eco.publish": N_("Air readings into the lake"),
    "events.deliver": N_("Webhook delivery"),
    "events.relay": N_("Event relay to NATS"),
    # What audit records are about.
    "resource": N_("Resource"),
    "job": N_("Job"),
    "audit": N_("Audit log"),
    "user": N_("Account"),
    "organization": N_("Organisation"),
    "api-client": N_("API client"),
    "address": N_("Network address"),
    "eco-alert": N_("Pollution alert"),
    "eco-anomaly": N_("Anomaly"),
    "eco-city": N_("City air quality"),
    "eco-dead-letter": N_("Refused reading"),
    "eco-lake": N_("Air data in the lake"),
    "eco-readings": N_("Air readings"),
    "eco-station": N_("Monitoring station"),
    # A resource's status, how fresh its data is, its update cycle, its loads.
    "draft": N_("Draft"),
    "published": N_("Published"),
    "retired": N_("Retired"),
    "freshness:fresh": N_("Up to date"),
    "freshness:overdue": N_("Overdue"),
    "freshness:never": N_("Never loaded"),
    "freshness:unscheduled": N_("Loaded"),
    "freshness:retired": N_("Retired"),
    "cycle:realtime": N_("Real time"),
    "cycle:hourly": N_("Hourly"),
    "cycle:daily": N_("Daily"),
    "cycle:weekly": N_("Weekly"),
    "cycle:monthly": N_("Monthly"),
    "cycle:quarterly": N_("Quarterly"),
    "cycle:yearly": N_("Yearly"),
    "cycle:irregular": N_("Irregular"),
    "load:running": N_("Running"),
    "load:committed": N_("Committed"),
    "load:rejected": N_("Rejected"),
    "load:failed": N_("Failed"),
    "load:noop": N_("Unchanged"),
    # Pollution alerts and the steps of their joint response.
    "alert:open": N_("Awaiting response"),
    "alert:consulting": N_("In consultation"),
    "alert:responding": N_("Responding"),
    "alert:closed": N_("Closed"),
    "step:detected": N_("Episode detected"),
    "step:routed": N_("Routed"),
    "step:consultation": N_("Consultation"),
    "step:level": N_("Response level"),
    "step:action": N_("Action"),
    "step:closed": N_("Closed"),
    "rule:jump": N_("Sudden jump"),
    "rule:stuck": N_("Stuck values"),
    "rule:spatial": N_("Out of line with neighbours"),
    "source:mqtt": N_("Live feed (MQTT)"),
    "source:file": N_("File import"),
    "source:api": N_("Reported through the API"),
    # A resource's format, its fields' types and formats (Table Schema), where loads came from.
    "resource-format:table": N_("Table"),
    "type:string": N_("Text"),
    "type:number": N_("Number"),
    "type:integer": N_("Integer"),
    "type:boolean": N_("Yes / no"),
    "type:date": N_("Date"),
    "type:datetime": N_("Date and time"),
    "type:time": N_("Time of day"),
    "type:year": N_("Year"),
    "type:yearmonth": N_("Year and month"),
    "format:cn-ric": N_("resident identity number"),
    "format:cn-uscc": N_("unified social credit code"),
    "format:email": N_("e-mail address"),
    "format:uri": N_("web address"),
    "format:uuid": N_("UUID"),
    "source-kind:csv": N_("CSV file"),
    "source-kind:xlsx": N_("Excel workbook"),
    "source-kind:jsonl": N_("JSON Lines file"),
    "source-kind:parquet": N_("Parquet file"),
    "source-kind:url": N_("Web address"),
    "source-kind:postgres": N_("PostgreSQL table"),
    "source-kind:mariadb": N_("MariaDB table"),
    # Who acted, when it was not a person.
    "system:minyun": N_("minyun (system)"),
    "cli": N_("the command line"),
    "demo": N_("the demo province"),
    "eco-cloud": N_("the eco-cloud"),
    "eco.detect": N_("anomaly detection"),
    "mqtt": N_("the live feed (MQTT)"),
    "anonymous:anonymous": N_("Anonymous visitor"),
}

# What each audited action is, in words; an action not listed is shown as its code.
ACTIONS: dict[str, str] = {
    "auth.login": N_("Sign in"),
    "auth.logout": N_("Sign out"),
    "auth.token": N_("Access token issued"),
    "audit.read": N_("Audit log read"),
    "audit.export": N_("Audit log exported"),
    "audit.verify": N_("Audit chain verified"),
    "catalog.read": N_("Catalog read"),
    "client.create": N_("API client created"),
    "client.revoke": N_("API client revoked"),
    "demo.load": N_("Demo province loaded"),
    "eco.alert.open": N_("Pollution alert opened"),
    "eco.alert.route": N_("Alert routed"),
    "eco.alert.consult": N_("Consultation started"),
    "eco.alert.level": N_("Response level set"),
    "eco.alert.action": N_("Response action recorded"),
    "eco.alert.close": N_("Response closed"),
    "eco.detect": N_("Anomaly detection"),
    "eco.ingest": N_("Air readings received"),
    "eco.publish": N_("Air readings into the lake"),
    "eco.read": N_("Air data read"),
    "job.submit": N_("Job submitted"),
    "job.finish": N_("Job finished"),
    "job.cancel": N_("Job cancelled"),
    "job.retry": N_("Job retried"),
    "org.create": N_("Organisation created"),
    "org.read": N_("Organisation read"),
    "resource.create": N_("Resource created"),
    "resource.edit": N_("Resource edited"),
    "resource.load": N_("Data load requested"),
    "resource.publish": N_("Resource published"),
    "resource.retire": N_("Resource retired"),
    "resource.schema": N_("Schema version"),
    "resource.version": N_("Data version committed"),
    "resource.read": N_("Data read"),
    "resource.rejects.read": N_("Rejected rows read"),
    "resource.quality.read": N_("Quality report read"),
    "user.create": N_("Account created"),
    "user.roles": N_("Roles changed"),
    "user.disable": N_("Account disabled"),
    "user.enable": N_("Account enabled"),
    "user.unlock": N_("Account unlocked"),
    "client.rotate": N_("API client secret rotated"),
    "org.edit": N_("Organisation edited"),
    # Capabilities: a refusal is recorded under the capability that was asked for.
    "jobs.read": N_("Jobs read"),
    "jobs.submit": N_("Job submission"),
    "org.manage": N_("Organisations managed"),
    "user.manage": N_("Accounts managed"),
    "client.manage": N_("API clients managed"),
    "eco.respond": N_("Joint response"),
    "events.read": N_("Events read"),
    "events.subscribe": N_("Event subscription created"),
    "events.unsubscribe": N_("Event subscription stopped"),
    "events.deliver": N_("Webhook delivery"),
    "events.relay": N_("Event relay to NATS"),
    # Food traceability (apps.food)
    "epcis.capture": N_("EPCIS events captured"),
    "epcis.query": N_("EPCIS events queried"),
    "epcis.query.create": N_("EPCIS named query saved"),
    "epcis.query.delete": N_("EPCIS named query removed"),
    "epcis.subscribe": N_("EPCIS query subscription created"),
    "epcis.unsubscribe": N_("EPCIS query subscription ended"),
    "food.trace": N_("Recall traced"),
    "food.product": N_("Product traceability viewed"),
    "food.risk": N_("Food risk scores read"),
    "food.pull-source.create": N_("EPCIS pull source added"),
}

# The navigation: (path, label, the action a viewer must be allowed to see it).
NAV: list[tuple[str, str, str | None]] = [
    ("/", N_("Home"), None),
    ("/catalog", N_("Catalog"), "catalog.read"),
    ("/sharing", N_("Sharing"), "exchange.read"),
    ("/nodes", N_("City nodes"), "nodes.read"),
    ("/eco", N_("Air quality"), "eco.read"),
    ("/grid", N_("Grid"), "grid.read"),
    ("/food", N_("Food safety"), "food.supervise"),
    ("/orgs", N_("Organisations"), "org.read"),
    ("/jobs", N_("Jobs"), "jobs.read"),
    ("/audit", N_("Audit log"), "audit.read"),
    ("/admin", N_("Administration"), "user.manage"),
    ("/opendata", N_("Open data"), None),
]


wording.NAMED_PARTS.update(
    action=ACTIONS,
    kind=LABELS,
    state=LABELS,
    change={"initial": N_("Initial"), "compatible": N_("Compatible"), "major": N_("Major")},
    mode={"full": N_("Full"), "append": N_("Append"), "upsert": N_("Upsert"),
          "delete": N_("Delete")},
)  # fmt: skip


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


def when(value: datetime | None) -> str:
    """A time as the pages show it: in China time (Asia/Shanghai), to the second."""
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
    env.filters["when"] = when
    env.filters["label"] = lambda value: translations.gettext(LABELS.get(str(value), str(value)))
    env.filters["action_label"] = lambda value: translations.gettext(
        ACTIONS.get(str(value), str(value))
    )
    env.filters["say"] = lambda text, names=None: wording.say(
        text, translations.gettext, when, names
    )
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
