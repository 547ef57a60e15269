"""Links to other platforms: pull events from another EPCIS 2.0 repository's query interface.

A `PullSource` names the other repository's `/epcis` root, the bearer token minyun was given
there, the query to run (standard parameters) and the department the events are counted
for (risk scores, capture jobs). A run asks `GET <root>/events` for the events recorded
since its watermark (`GE_recordTime`, `orderBy=recordTime`), follows `Link: rel="next"`
page by page, drops events already stored here (same eventID), and captures each page's
new events as one all-or-nothing capture (`source="pull"`), moving the watermark after
each page. The `food.pull` job runs every source; `submit` keys it by quarter hour, so a
timer (or `POST /api/v1/food/pulls`) may ask as often as it likes and each period pulls once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.food import epcis
from minyun.apps.food import query as food_query
from minyun.apps.food import service as svc
from minyun.apps.food.models import FoodEvent, PullSource
from minyun.core import audit, clock, jobs
from minyun.core.config import Settings, load_settings
from minyun.core.errors import Conflict, Invalid, NotFound
from minyun.core.lake import Lake
from minyun.core.security import Principal, authorize

KIND = "food.pull"
PER_PAGE = 500
MAX_PAGES = 1000
EVERY_MINUTES = 15  # the schedule: one pull of every source per quarter hour at most


def add_source(
    session: Session,
    actor: Principal,
    *,
    name: str,
    base_url: str,
    token: str | None = None,
    query: dict[str, list[str]] | None = None,
    organization_id: int | None = None,
) -> PullSource:
    """Register another repository to pull from (admins and stewards)."""
    authorize(session, actor, "food.pull", target=name, target_type="food-pull-source")
    if not base_url.startswith(("http://", "https://")):
        raise Invalid("base_url: the other repository's http(s) /epcis root", field="base_url")
    food_query.parse(query or {})
    if session.scalars(select(PullSource).where(PullSource.name == name)).first():
        raise Conflict(f"a pull source named {name} exists", field="name")
    source = PullSource(name=name, base_url=base_url.rstrip("/"), token=token, query=query or {},
                        organization_id=organization_id or actor.organization_id)  # fmt: skip
    session.add(source)
    session.flush()
    audit.record(session, actor, "food.pull-source.create", target=name,
                 target_type="food-pull-source",
                 detail=json.dumps({"base_url": source.base_url, "query": source.query}))  # fmt: skip
    return source


@dataclass
class PullResult:
    pages: int = 0
    received: int = 0
    captured: int = 0


def run_source(session: Session, lake: Lake, source_id: int, http: httpx.Client) -> PullResult:
    """Pull one source's new events; each page is committed by the caller's transaction
    (one page per call of `_page`, the watermark saved with it)."""
    source = session.get(PullSource, source_id)
    if source is None:
        raise NotFound(f"no pull source {source_id}")
    actor = Principal(kind="system", name="minyun", organization_id=source.organization_id,
                      on_behalf_of=f"pull:{source.name}")  # fmt: skip
    params: dict[str, Any] = {k: "|".join(v) for k, v in source.query.items()}
    params.update(orderBy="recordTime", perPage=str(PER_PAGE))
    if source.watermark is not None:
        params["GE_recordTime"] = source.watermark.isoformat().replace("+00:00", "Z")
    headers = {"Authorization": f"Bearer {source.token}"} if source.token else {}
    headers["GS1-EPCIS-Version"] = epcis.EPCIS_VERSION
    result = PullResult()
    url: str | None = f"{source.base_url}/events"
    while url and result.pages < MAX_PAGES:
        answer = http.get(url, params=params if result.pages == 0 else None, headers=headers)
        if answer.status_code != 200:
            raise Invalid(f"{source.name} answered {answer.status_code}: {answer.text[:300]}")
        doc = answer.json()
        result.pages += 1
        result.captured += _page(session, actor, lake, source, doc, result)
        url = _next(answer, source.base_url)
    source.last_run_at = clock.now()
    source.last_result = json.dumps(result.__dict__)
    return result


def _page(
    session: Session, actor: Principal, lake: Lake, source: PullSource, doc: dict[str, Any],
    result: PullResult,
) -> int:  # fmt: skip
    events = epcis.events_of(doc)
    result.received += len(events)
    times = [epcis.parse_time(e["recordTime"]) for e in events if e.get("recordTime")]
    ids = [e.get("eventID") for e in events if e.get("eventID")]
    known = set(session.scalars(select(FoodEvent.event_id).where(FoodEvent.event_id.in_(ids))))
    fresh = [e for e in events if e.get("eventID") not in known]
    if fresh:
        page = {**doc, "type": "EPCISDocument",
                "epcisBody": {"eventList": [{k: v for k, v in e.items() if k != "recordTime"}
                                            for e in fresh]}}  # fmt: skip
        job = svc.capture(session, actor, lake, page, source="pull")
        if not job.success:
            raise Invalid(f"{source.name}: a page was refused: {job.errors[0]['detail']}")
    if times:
        source.watermark = max(times + ([source.watermark] if source.watermark else []))
    return len(fresh)


def _next(answer: httpx.Response, base_url: str) -> str | None:
    link = answer.headers.get("Link", "")
    if 'rel="next"' not in link:
        return None
    target: str = urljoin(base_url + "/", link[link.index("<") + 1 : link.index(">")])
    return target


def submit(
    session: Session, actor: Principal, settings: Settings, *, now: datetime | None = None
) -> jobs.Job:
    """Queue a run of every pull source, at most one per `EVERY` period: a timer may call
    this as often as it likes (the period's key makes the job idempotent)."""
    authorize(session, actor, "food.pull", target="pull", target_type="food-pull-source")
    at = now or clock.now()
    period = at.replace(second=0, microsecond=0, minute=at.minute - at.minute % EVERY_MINUTES)
    params = {"var_dir": str(settings.var_dir), "lake_uri": settings.lake_uri}
    return jobs.submit(session, actor, KIND, params, key=f"{KIND}@{period.isoformat()}")


@jobs.handler(KIND)
def run_pulls(ctx: jobs.JobContext) -> dict[str, Any]:
    """Pull every source; one source's failure is reported and the others still run."""
    settings = load_settings(var_dir=Path(ctx.params["var_dir"]), lake_uri=ctx.params["lake_uri"])
    lake = Lake(settings.lake_uri)
    with ctx.factory() as session:
        sources = list(session.scalars(select(PullSource.id)))
    done: dict[str, Any] = {}
    with httpx.Client(timeout=30) as http:
        for n, source_id in enumerate(sources):
            ctx.progress(n, len(sources))
            try:
                with ctx.factory.begin() as session:
                    done[str(source_id)] = run_source(session, lake, source_id, http).__dict__
            except (Invalid, NotFound, httpx.HTTPError) as exc:
                done[str(source_id)] = {"error": str(exc)[:300]}
    return {"sources": done}
