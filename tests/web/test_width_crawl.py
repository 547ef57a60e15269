"""Every kind of demo account, and an anonymous visitor, crawls the demo province in headless Chromium
at a phone's width: no link leads to a 4xx or 5xx, and no page is wider than the phone.

The crawl starts at the home page and at every GET page route without path parameters (so a
page added later is visited even before something links to it), then follows every link on
this site: same origin, GET only, downloads and sign-out left out. It visits a few examples per
route pattern and query shape (`/catalog/{code}`, `/catalog?theme=`) and a few more per
route (a list's filters combine into many shapes), which keeps it fast however many resources
the demo holds, and takes in new patterns as pages add them. An account with the same roles
as another and pages that differ only in their data (another city's duty officer) is not
crawled again.

A start page may refuse a role (403, or 401 for the anonymous visitor): it was not offered to
them. A page reached by a link must answer, since the link was offered.
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

import minyun.handlers  # noqa: F401 - the demo.load job and the jobs it queues
from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.demo import province
from minyun.web.app import create_app
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE_WIDTH = 375
# Sub-pixel rounding may give one pixel more than the viewport.
MAX_WIDTH = PHONE_WIDTH + 1
# Pages visited per route pattern and query shape, per account, and per route pattern
# whatever its query (a list page's filters combine into many shapes: /opendata?domain=&q=).
EXAMPLES = 2
ROUTE_EXAMPLES = 6
# Accounts whose pages are another's with other data (the same role in another city, another
# department on grid duty): crawled once, by the account they are the same as.
SAME_VIEW = {"eco-zhangzhou": "eco-fuzhou", "xiaofang": "jiaojing", "fangguan": "jiaojing",
             "chengguan": "jiaojing"}  # fmt: skip
# Not pages: static files, the language switch (a redirect back), health checks, API docs.
# /epcis is the EPCIS 2.0 REST binding (apps.food): JSON for machines, like /api/.
NOT_PAGES = ("/static/", "/lang/", "/healthz", "/readyz", "/api/docs", "/api/openapi.json")
NOT_PAGES += ("/epcis",)
# The e-licences' documents for verifiers (trust bundle, status lists, DID documents).
NOT_PAGES += ("/licences/trust-bundle", "/licences/status/", "/licences/issuers/")
# Links that download a file rather than show a page (besides those marked `download`).
DOWNLOAD_PATH = re.compile(r"/(download|export)(\.\w+)?$|\.(csv|parquet|json|jsonl|xlsx|zip)$")
DOWNLOAD_QUERY = re.compile(r"(^|&)(format|download)=")
ANONYMOUS = "anonymous"


@dataclass
class Crawl:
    """What one account's crawl saw."""

    who: str
    pages: dict[str, int] = field(default_factory=dict)  # path -> status
    widths: dict[str, int] = field(default_factory=dict)  # path -> document scroll width
    broken: list[tuple[str, int, str]] = field(default_factory=list)  # (path, status, linked from)
    too_wide: list[tuple[str, int]] = field(default_factory=list)
    fragments: dict[str, int] = field(default_factory=dict)  # htmx and API GETs -> status


def _templates(app: FastAPI) -> list[tuple[re.Pattern[str], str]]:
    """Every GET route's path as a regular expression, literal paths before parametrised ones."""

    def walk(routes: list[Any], prefix: str = "") -> Iterator[str]:
        for r in routes:
            if hasattr(r, "original_router"):
                yield from walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif "GET" in (getattr(r, "methods", None) or ()):
                yield prefix + r.path

    paths = sorted(set(walk(app.routes)), key=lambda p: (p.count("{"), p))
    compiled = []
    for path in paths:
        pattern = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{\w+\}", "[^/]+", re.sub(r"\{\w+:path\}", ".+", pattern))
        compiled.append((re.compile(f"^{pattern}$"), path))
    return compiled


def _start_pages(templates: list[tuple[re.Pattern[str], str]]) -> list[str]:
    """The home page first, then every page route that needs no path parameter."""
    pages = [
        path
        for _regex, path in templates
        if "{" not in path and not path.startswith("/api/") and not _skipped(path)
    ]
    return ["/", *sorted(p for p in pages if p != "/")]


def _shape(templates: list[tuple[re.Pattern[str], str]], target: str) -> tuple[str, ...]:
    """The route pattern a path belongs to, with the names of its query parameters."""
    parts = urlsplit(target)
    route = next((path for regex, path in templates if regex.match(parts.path)), parts.path)
    return (route, *sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}))


def _path(url: str) -> str:
    """The path and query of a URL."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _skipped(target: str) -> bool:
    """Not a page to visit: static files and the like, downloads, signing out."""
    parts = urlsplit(target)
    return (
        target.startswith(NOT_PAGES)
        or parts.path == "/logout"
        or bool(DOWNLOAD_PATH.search(parts.path) or DOWNLOAD_QUERY.search(parts.query))
    )


def _local(base: str, here: str, href: str | None) -> str | None:
    """`href` as a path on this site, or None (elsewhere, fragment only, not HTTP)."""
    if not href or href.startswith(("#", "mailto:", "tel:", "javascript:", "data:")):
        return None
    url = urljoin(base + here, href)
    return _path(url) if url.startswith(base + "/") else None


LINKS_JS = """() => {
  const anchors = [...document.querySelectorAll('a[href]')]
    .filter(a => !a.hasAttribute('download'))
    .map(a => a.getAttribute('href'));
  const gets = [...document.querySelectorAll('form')]
    .filter(f => (f.getAttribute('method') || 'get').toLowerCase() === 'get')
    // A form the browser would not send as it stands (a required field empty) is left out.
    .filter(f => ![...f.elements].some(el => el.required && !el.value))
    .map(f => {
      const params = new URLSearchParams();
      for (const el of f.elements) {
        if (!el.name || el.disabled || el.type === 'submit' || el.type === 'button') continue;
        if ((el.type === 'checkbox' || el.type === 'radio') && !el.checked) continue;
        params.append(el.name, el.value);
      }
      const action = f.getAttribute('action') || location.pathname;
      const query = params.toString();
      return query ? action + '?' + query : action;
    });
  const htmx = [...document.querySelectorAll('[hx-get]')].map(e => e.getAttribute('hx-get'));
  return {links: [...anchors, ...gets], htmx};
}"""


def _crawl(context: Any, base: str, who: str, templates: list[tuple[re.Pattern[str], str]],
           shots: Path) -> Crawl:  # fmt: skip
    from playwright.sync_api import Error as PlaywrightError

    page = context.new_page()
    seen: Crawl = Crawl(who)
    per_shape: Counter[tuple[str, ...]] = Counter()
    per_route: Counter[str] = Counter()
    queue: deque[tuple[str, str | None]] = deque((p, None) for p in _start_pages(templates))
    queued = {p for p, _ in queue}
    while queue:
        path, source = queue.popleft()
        try:
            response = page.goto(base + path, wait_until="load")
        except PlaywrightError as exc:
            if "Download is starting" not in str(exc):
                raise
            # A file, not a page: it must answer, it has no width.
            got = context.request.get(base + path)
            seen.fragments[path] = got.status
            if got.status >= 400:
                seen.broken.append((path, got.status, source or "(start page)"))
            continue
        status = response.status if response is not None else 0
        seen.pages[path] = status
        allowed = (401, 403) if source is None else ()
        if status >= 400 and status not in allowed:
            seen.broken.append((path, status, source or "(start page)"))
        width = int(page.evaluate("document.documentElement.scrollWidth"))
        seen.widths[path] = width
        if width > MAX_WIDTH:
            seen.too_wide.append((path, width))
            name = re.sub(r"[^\w.-]+", "_", f"wide-{who}{path}")[:120] + ".png"
            page.screenshot(path=shots / name, full_page=True)
            keep(shots / name)
        found = page.evaluate(LINKS_JS)
        here = _path(page.url)
        for href in found["htmx"]:
            target = _local(base, here, href)
            if target is None or target in seen.fragments:
                continue
            shape = _shape(templates, target)
            if per_shape[shape] >= EXAMPLES or per_route[shape[0]] >= ROUTE_EXAMPLES:
                continue
            per_shape[shape] += 1
            per_route[shape[0]] += 1
            got = context.request.get(base + target, headers={"HX-Request": "true"})
            seen.fragments[target] = got.status
            if got.status >= 400:
                seen.broken.append((target, got.status, path))
        for href in found["links"]:
            target = _local(base, here, href)
            if target is None or target in queued or _skipped(target):
                continue
            shape = _shape(templates, target)
            if per_shape[shape] >= EXAMPLES or per_route[shape[0]] >= ROUTE_EXAMPLES:
                continue
            per_shape[shape] += 1
            per_route[shape[0]] += 1
            queued.add(target)
            if target.startswith("/api/"):
                # JSON the page links to (a schema version, say): it must answer, it has no width.
                got = context.request.get(base + target)
                seen.fragments[target] = got.status
                if got.status >= 400:
                    seen.broken.append((target, got.status, path))
                continue
            queue.append((target, path))
    page.close()
    return seen


def _sign_in(context: Any, base: str, username: str, password: str) -> None:
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.close()


def _load_demo(platform: Platform) -> list[province.DemoAccount]:
    """The demo province as `minyun demo` builds it (no synthetic population: not crawled)."""
    params = {
        "persons": 0, "enterprises": 0, "seed": 2026,
        "var_dir": str(platform.settings.var_dir), "lake_uri": platform.settings.lake_uri,
    }  # fmt: skip
    with platform.factory.begin() as session:
        jobs.submit(session, Principal.system(), "demo.load", params, key="demo")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with platform.factory() as session:
            busy = session.scalar(
                select(func.count()).where(jobs.Job.state.in_(("queued", "running")))
            )
            failed = session.scalars(select(jobs.Job).where(jobs.Job.state == "failed")).all()
        assert not failed, [(j.kind, j.error) for j in failed]
        if not busy:
            return province.read_accounts(platform.settings.var_dir)
        time.sleep(0.2)
    raise AssertionError("the demo load did not finish")


def test_every_role_crawls_every_page_without_errors_or_sideways_scrolling(
    platform: Platform, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    accounts = _load_demo(platform)
    names = {a.username for a in accounts}
    assert names >= {"admin", "steward", "citizen", *SAME_VIEW, *SAME_VIEW.values()}, names
    roles = {a.username: sorted(a.roles) for a in accounts}
    assert all(roles[a] == roles[b] for a, b in SAME_VIEW.items()), roles
    accounts = [a for a in accounts if a.username not in SAME_VIEW]
    app = create_app(platform)
    templates = _templates(app)
    crawls: list[Crawl] = []
    with serve(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for account in [None, *accounts]:
                context = browser.new_context(
                    viewport={"width": PHONE_WIDTH, "height": 812}, is_mobile=True, has_touch=True
                )
                if account is not None:
                    _sign_in(context, base, account.username, account.password)
                who = account.username if account else ANONYMOUS
                crawls.append(_crawl(context, base, who, templates, tmp_path))
                context.close()
        finally:
            browser.close()

    for crawl in crawls:  # shown with -s: what each account's crawl covered
        print(f"{crawl.who}: {len(crawl.pages)} pages, {len(crawl.fragments)} other GETs")
    by_who = {c.who: c for c in crawls}
    # The crawl really went places: every role reaches the public air page and the catalog,
    # civil servants reach resource pages, and the steward its department's jobs.
    for crawl in crawls:
        assert "/air" in crawl.pages and crawl.pages["/air"] == 200, crawl.who
        assert any(p.startswith("/catalog") for p in crawl.pages), crawl.who
    steward, admin = by_who["steward"].pages, by_who["admin"].pages
    assert any(re.match(r"^/catalog/[\w-]+$", p) and s == 200 for p, s in steward.items())
    assert any(re.match(r"^/jobs/\w+$", p) and s == 200 for p, s in steward.items())
    # The steward's rejects pages are reached from the rejected counts.
    assert any(re.match(r"^/catalog/[\w-]+/versions/\d+/rejects$", p) and s == 200
               for p, s in steward.items())  # fmt: skip
    assert any(re.match(r"^/eco/alerts/\d+$", p) and s == 200 for p, s in admin.items())
    broken = [(c.who, *b) for c in crawls for b in c.broken]
    assert broken == [], "links to error pages (who, page, status, linked from): " + repr(broken)
    wide = [(c.who, *w) for c in crawls for w in c.too_wide]
    assert wide == [], f"wider than {PHONE_WIDTH} px (who, page, width): {wide}"
