"""The EPCIS 2.0 repository: capture, capture jobs, queries, named queries.

Capture is all or nothing per document: the document is validated against the official
schema (refused whole: `ValidationException`), every event gets its eventID (the CBV hash
when it has none) and its recordTime, then in one go the events are indexed in the
caller's transaction (a repeated eventID, in the document or already stored, fails the
capture job and stores nothing), appended to the lake as one Delta commit carrying the
capture's id, and the job is marked done. A lake commit whose control-plane transaction
then fails leaves rows of a capture that does not exist in the index; lake readers keep
only the rows of committed captures (`food.lake`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minyun.apps.food import batch, epcis, gs1, index
from minyun.apps.food import lake as food_lake
from minyun.apps.food import query as q
from minyun.apps.food.models import CaptureJob, FoodEvent, FoodEventTerm, FoodName, NamedQuery
from minyun.core import audit, clock
from minyun.core.errors import Conflict, Invalid, NotFound
from minyun.core.lake import Lake
from minyun.core.security import Principal, authorize

CAPTURE_LIMIT = 10_000  # events per document (GS1-EPCIS-Capture-Limit)
CAPTURE = "epcis.capture"
QUERY = "epcis.query"
SIMPLE = "SimpleEventQuery"


def invalid_document(errors: list[str]) -> Invalid:
    """The binding's ValidationException (400): the whole document is refused."""
    return Invalid(
        f"the document is not valid EPCIS 2.0: {errors[0]}" if errors else "invalid document",
        code="ValidationException",
        field="document",
        errors=errors[:50],
    )


def parse_document(raw: bytes) -> dict[str, Any]:
    """The JSON of a capture's body, validated against the official schema."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid_document([f"not JSON: {exc}"]) from exc
    try:
        epcis.validate_document(doc)
    except epcis.DocumentError as exc:
        raise invalid_document(exc.errors) from exc
    return dict(doc)


# --- capture ------------------------------------------------------------------------------


def capture(
    session: Session,
    actor: Principal,
    lake: Lake,
    document: bytes | Mapping[str, Any],
    *,
    error_behaviour: str = "rollback",
    source: str = "capture",
) -> CaptureJob:
    """Store every event of a document (its JSON text, or parsed), or none; the capture job
    says which. A document the schema refuses raises ValidationException.

    The document is one batch (`food.batch`): validated whole, its events normalised and
    hashed in one pass, indexed with one bulk write per table and appended to the lake as
    one commit; bulk uploads and pulls come through here too."""
    authorize(session, actor, CAPTURE, target="capture", target_type="epcis-capture")
    doc = parse_document(document) if isinstance(document, bytes) else document
    if isinstance(document, Mapping):
        try:
            epcis.validate_document(document)
        except epcis.DocumentError as exc:
            raise invalid_document(exc.errors) from exc
    if error_behaviour != "rollback":
        raise Invalid("this repository captures all or nothing: GS1-Capture-Error-Behaviour "
                      "must be rollback", code="ValidationException", field="headers")  # fmt: skip
    events = epcis.events_of(doc)
    if len(events) > CAPTURE_LIMIT:
        raise Invalid(
            f"at most {CAPTURE_LIMIT} events per capture", code="CaptureLimitExceededException"
        )
    job = CaptureJob(
        capture_id="cap_" + secrets.token_hex(8), actor=actor.label[:120],
        organization_id=actor.organization_id, source=source, errors=[],
        error_behaviour=error_behaviour, event_count=len(events),
    )  # fmt: skip
    session.add(job)
    session.flush()
    try:
        prepared = batch.prepare(events, epcis.context_prefixes(doc), capture=job.id,
                                 organization_id=job.organization_id, now=clock.now())  # fmt: skip
    except ValueError as exc:  # a time RFC 3339 allows that cannot be stored (a leap second)
        raise invalid_document([str(exc)]) from exc
    errors = _twice(prepared.ids)
    if not errors:
        errors = _store(session, lake, job, prepared)
    if not errors:
        keep_names(session, doc)
    job.running, job.success, job.errors = False, not errors, errors
    job.finished_at = clock.now()
    audit.record(
        session, actor, "epcis.capture", target=job.capture_id, target_type="epcis-capture",
        count=len(events) if not errors else 0,
        outcome=audit.Outcome.SUCCESS if not errors else audit.Outcome.FAILED,
        detail=json.dumps({"events": len(events), "errors": [e["detail"] for e in errors][:5],
                           "source": source}, ensure_ascii=False),
    )  # fmt: skip
    return job


def capture_event(session: Session, actor: Principal, lake: Lake, raw: bytes) -> str:
    """Capture one event at once (`POST /epcis/events`): its eventID. The event goes in as a
    document of one event through `capture`; an eventID already stored is
    ResourceAlreadyExistsException."""
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid_document([f"not JSON: {exc}"]) from exc
    if not isinstance(event, dict):
        raise invalid_document(["the body is not a JSON object (an EPCIS event)"])
    context = event.pop("@context", epcis.CONTEXT)
    doc = {"@context": context, "type": "EPCISDocument", "schemaVersion": "2.0",
           "creationDate": clock.now().isoformat(timespec="seconds").replace("+00:00", "Z"),
           "epcisBody": {"eventList": [event]}}  # fmt: skip
    job = capture(session, actor, lake, doc, source="event")
    if not job.success:
        raise Conflict(job.errors[0]["detail"], code="ResourceAlreadyExistsException")
    return str(event.get("eventID") or epcis.event_hash_id(event, epcis.context_prefixes(doc)))


def _problem(detail: str, title: str = "Validation error") -> dict[str, Any]:
    return {"type": "epcisException:ValidationException", "title": title, "status": 400,
            "detail": detail}  # fmt: skip


def _twice(ids: list[str]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    twice = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    return [_problem(f"eventID {i} appears twice in the document") for i in twice[:100]]


def _already_stored(session: Session, ids: list[str]) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for chunk in range(0, len(ids), 5000):
        stored = session.scalars(
            select(FoodEvent.event_id).where(FoodEvent.event_id.in_(ids[chunk : chunk + 5000]))
        ).all()
        errors.extend(_problem(f"eventID {i} is already stored") for i in stored)
    return errors[:100] or [_problem("an eventID of this document was stored by another capture")]


def _store(
    session: Session, lake: Lake, job: CaptureJob, prepared: batch.EventBatch
) -> list[dict[str, Any]]:
    """Index the batch (savepoint) then append it to the lake; errors, or none. The unique
    eventID decides whether an event is stored already (no look-up first): on a clash the
    savepoint leaves nothing and the errors name the ids."""
    if prepared.events.num_rows == 0:
        return []
    try:
        with session.begin_nested():
            index.append(session.connection(), prepared)
    except IntegrityError:
        return _already_stored(session, prepared.ids)
    job.lake_version = food_lake.append(lake, job.id, prepared)
    return []


def keep_names(session: Session, doc: Mapping[str, Any]) -> None:
    """Keep the names the document's master data gives its locations and parties (one
    statement for all of them; a name is written only when it is new or changed)."""
    header = doc.get("epcisHeader") or {}
    vocabularies = (header.get("epcisMasterData") or {}).get("vocabularyList") or []
    names: dict[str, str] = {}
    for vocabulary in vocabularies:
        for element in vocabulary.get("vocabularyElementList") or []:
            for attribute in element.get("attributes") or []:
                if str(attribute.get("id", "")).endswith("#name") and element.get("id"):
                    uri = gs1.canonical(element["id"])[:300]
                    names[uri] = str(attribute.get("attribute"))[:200]
    if not names:
        return
    # One upsert: captures running at once may name the same place (the same master data in
    # each company's documents); a name changes only where it differs.
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(FoodName).values(
        [
            {"uri": uri, "name": name, "updated_at": clock.now()}
            for uri, name in sorted(names.items())
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[FoodName.uri],
            set_={"name": statement.excluded.name, "updated_at": statement.excluded.updated_at},
            where=FoodName.name != statement.excluded.name,
        )
    )


def get_capture(session: Session, actor: Principal, capture_id: str) -> CaptureJob:
    """A capture job, for clients that may capture (any client's job: ids are unguessable)."""
    authorize(session, actor, CAPTURE, target=capture_id, target_type="epcis-capture")
    job = session.scalars(select(CaptureJob).where(CaptureJob.capture_id == capture_id)).first()
    if job is None:
        raise NotFound(f"no capture job {capture_id}", code="NoSuchResourceException")
    return job


def list_captures(session: Session, actor: Principal, *, limit: int = 100) -> list[CaptureJob]:
    """The caller's organisation's newest capture jobs."""
    authorize(session, actor, CAPTURE, target="capture", target_type="epcis-capture")
    stmt = select(CaptureJob).order_by(CaptureJob.id.desc()).limit(limit)
    if actor.organization_id is not None:
        stmt = stmt.where(CaptureJob.organization_id == actor.organization_id)
    return list(session.scalars(stmt))


def capture_document(job: CaptureJob) -> dict[str, Any]:
    """A capture job as the binding's CaptureJob document."""

    def when(t: datetime | None) -> str | None:
        return t.isoformat(timespec="seconds").replace("+00:00", "Z") if t else None

    return {
        "captureID": job.capture_id, "createdAt": when(job.created_at),
        "finishedAt": when(job.finished_at), "running": job.running, "success": job.success,
        "captureErrorBehaviour": job.error_behaviour, "errors": list(job.errors),
    }  # fmt: skip


# --- queries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventPage:
    """One page of a query's events, with the token of the next page (None: the last)."""

    events: list[dict[str, Any]]
    contexts: list[dict[str, str]]
    next_token: str | None
    query_name: str
    keys: list[int] = field(default_factory=list)  # the events' index keys


def query_events(
    session: Session,
    actor: Principal,
    params: Mapping[str, Sequence[str]],
    *,
    per_page: int | None = None,
    token: str | None = None,
    extra: Sequence[Any] = (),
    query_name: str = SIMPLE,
    purpose: str = "epcis query",
) -> EventPage:
    """The events matching the standard query parameters, one page at a time, audited."""
    authorize(session, actor, QUERY, target=query_name, target_type="epcis-query")
    parsed = q.parse(params)
    size = _per_page(per_page)
    bound = _binding(parsed.params, extra, query_name)
    after = _read_token(session, token, bound) if token else None
    column = getattr(FoodEvent, parsed.order_by)
    stmt = select(FoodEvent).where(q.combined(parsed), *extra)
    if after is not None:
        key, pk = datetime.fromisoformat(after[0]), int(after[1])
        later = (column < key) | ((column == key) & (FoodEvent.id < pk)) if parsed.descending \
            else (column > key) | ((column == key) & (FoodEvent.id > pk))  # fmt: skip
        stmt = stmt.where(later)
    order = (column.desc(), FoodEvent.id.desc()) if parsed.descending else (column, FoodEvent.id)
    limit = size + 1
    if parsed.max_event_count:
        _check_count(session, parsed, extra)
    if parsed.event_count_limit:
        seen = int(after[2]) if after else 0
        limit = min(limit, max(parsed.event_count_limit - seen, 0))
        if limit == 0:
            return EventPage([], [], None, query_name)
    rows = list(session.scalars(stmt.order_by(*order).limit(limit)))
    more = len(rows) > size
    rows = rows[:size]
    next_token = None
    if more and rows:
        last = rows[-1]
        seen = (int(after[2]) if after else 0) + len(rows)
        next_token = _make_token(session, bound, getattr(last, parsed.order_by), last.id, seen)
    audit.record_read(
        session, actor, "epcis.query", target=query_name, target_type="epcis-query",
        keys=[r.event_id for r in rows][:100], count=len(rows), purpose=purpose,
        detail=json.dumps(parsed.params, ensure_ascii=False, sort_keys=True)[:2000],
    )  # fmt: skip
    return EventPage([r.body for r in rows], [r.context for r in rows], next_token, query_name,
                     [r.id for r in rows])  # fmt: skip


def _per_page(per_page: int | None) -> int:
    if per_page is None:
        return q.PER_PAGE_DEFAULT
    if per_page < 1 or per_page > q.PER_PAGE_MAX:
        raise q.refuse(f"perPage: 1–{q.PER_PAGE_MAX}")
    return per_page


def _check_count(session: Session, parsed: q.Query, extra: Sequence[Any]) -> None:
    count = session.scalar(select(func.count(FoodEvent.id)).where(q.combined(parsed), *extra))
    if parsed.max_event_count is not None and (count or 0) > parsed.max_event_count:
        raise Invalid(f"the query matches {count} events, more than maxEventCount",
                      code="QueryTooLargeException")  # fmt: skip


def _binding(params: Mapping[str, list[str]], extra: Sequence[Any], name: str) -> str:
    text = json.dumps([params, name, [str(e) for e in extra]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _key(session: Session) -> bytes:
    node_key = session.info.get("node_key")
    if node_key is None:
        raise Invalid("no node key to sign page tokens with", code="ImplementationException")
    derived: bytes = node_key.derive("epcis-page")
    return derived


def _make_token(session: Session, bound: str, key: datetime, pk: int, seen: int) -> str:
    state = json.dumps([bound, key.isoformat(), pk, seen]).encode()
    sig = hmac.new(_key(session), state, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(state + sig).decode().rstrip("=")


def _read_token(session: Session, token: str, bound: str) -> tuple[str, int, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state, sig = raw[:-16], raw[-16:]
        good = hmac.compare_digest(
            hmac.new(_key(session), state, hashlib.sha256).digest()[:16], sig
        )
        decoded = json.loads(state) if good else None
    except (ValueError, json.JSONDecodeError):
        decoded = None
    if not decoded or decoded[0] != bound:
        raise q.refuse("nextPageToken: not a token of this query")
    return decoded[1], int(decoded[2]), int(decoded[3])


def release_page_token(session: Session, actor: Principal, token: str) -> None:
    """`DELETE /epcis/nextPageToken/{token}`: nothing is held for a token (it is signed and
    carries its own position), so there is nothing to free; the caller must be allowed to
    query."""
    authorize(session, actor, QUERY, target="nextPageToken", target_type="epcis-query")


def query_document(page: EventPage) -> dict[str, Any]:
    """An EPCISQueryDocument holding the page's events, with the prefixes they use."""
    prefixes: dict[str, str] = {}
    for context in page.contexts:
        prefixes.update(context)
    ctx: list[Any] = [epcis.CONTEXT] + ([prefixes] if prefixes else [])
    return {
        "@context": ctx, "type": "EPCISQueryDocument", "schemaVersion": "2.0",
        "creationDate": clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "epcisBody": {"queryResults": {"queryName": page.query_name,
                                       "resultsBody": {"eventList": page.events}}},
    }  # fmt: skip


def get_event(session: Session, actor: Principal, event_id: str) -> EventPage:
    """One event by its eventID, or NoSuchResourceException."""
    page = query_events(session, actor, {"EQ_eventID": [event_id]}, per_page=1)
    if not page.events:
        raise NotFound(f"no event {event_id}", code="NoSuchResourceException")
    return page


# --- top-level resources --------------------------------------------------------------------

_VOCAB_COLUMNS = {
    "bizSteps": FoodEvent.biz_step,
    "bizLocations": FoodEvent.biz_location,
    "readPoints": FoodEvent.read_point,
    "dispositions": FoodEvent.disposition,
    "eventTypes": FoodEvent.event_type,
}


def known_values(
    session: Session, actor: Principal, resource: str, *, limit: int = 1000
) -> list[str]:
    """The values of a top-level resource (`bizSteps`, `epcs`, …) seen in stored events."""
    authorize(session, actor, QUERY, target=resource, target_type="epcis-query")
    if resource == "epcs":
        ids = (select(FoodEventTerm.value).where(FoodEventTerm.kind.in_(q.ALL_IDS))
               .distinct().order_by(FoodEventTerm.value).limit(limit))  # fmt: skip
        return list(session.scalars(ids))
    if resource == "eventTypes":
        return list(epcis.EVENT_TYPES)
    column = _VOCAB_COLUMNS[resource]
    stmt = select(column).where(column.is_not(None)).distinct().order_by(column).limit(limit)
    return [v for v in session.scalars(stmt) if v]


def resource_params(resource: str, value: str) -> dict[str, list[str]]:
    """The query of `/epcis/{resource}/{value}/events`."""
    if resource == "epcs":
        return {}
    name = {"bizSteps": "EQ_bizStep", "bizLocations": "EQ_bizLocation",
            "readPoints": "EQ_readPoint", "dispositions": "EQ_disposition",
            "eventTypes": "eventType"}.get(resource)  # fmt: skip
    if name is None:
        raise NotFound(f"no resource {resource}", code="NoSuchResourceException")
    return {name: [value]}


def epc_condition(epc: str) -> Any:
    """Events naming `epc` in any role (instance or class), in either identifier form."""
    return q._any_term(q.ALL_IDS, [q._pattern(epc)])


# --- named queries ------------------------------------------------------------------------


def create_query(
    session: Session, actor: Principal, *, name: str, query: Mapping[str, Any]
) -> NamedQuery:
    """Save a named query after checking its parameters; ResourceAlreadyExists if taken."""
    authorize(session, actor, QUERY, target=name, target_type="epcis-query")
    if not name or len(name) > 100 or not all(c.isalnum() or c in "-_." for c in name):
        raise q.refuse("name: 1–100 letters, digits, '-', '_' or '.'")
    params = {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in query.items()}
    q.parse(params)
    if session.scalars(select(NamedQuery).where(NamedQuery.name == name)).first():
        raise Conflict(f"a query named {name} exists", code="ResourceAlreadyExistsException")
    saved = NamedQuery(name=name, query=params, owner=actor.label[:120])
    session.add(saved)
    session.flush()
    audit.record(session, actor, "epcis.query.create", target=name, target_type="epcis-query",
                 detail=json.dumps(params, ensure_ascii=False, sort_keys=True))  # fmt: skip
    return saved


def get_query(session: Session, actor: Principal, name: str) -> NamedQuery:
    """A named query, or NoSuchNameException."""
    authorize(session, actor, QUERY, target=name, target_type="epcis-query")
    found = session.scalars(select(NamedQuery).where(NamedQuery.name == name)).first()
    if found is None:
        raise NotFound(f"no query named {name}", code="NoSuchNameException")
    return found


def list_queries(session: Session, actor: Principal) -> list[NamedQuery]:
    """Every named query."""
    authorize(session, actor, QUERY, target="queries", target_type="epcis-query")
    return list(session.scalars(select(NamedQuery).order_by(NamedQuery.name)))


def delete_query(session: Session, actor: Principal, name: str) -> None:
    """Remove a named query."""
    found = get_query(session, actor, name)
    session.execute(delete(NamedQuery).where(NamedQuery.id == found.id))
    audit.record(session, actor, "epcis.query.delete", target=name, target_type="epcis-query")
