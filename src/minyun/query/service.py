"""Row queries on a resource: fields, filter, sort, keyset paging, time travel — as planned.

Every read asks `catalog.access_data` for the `AccessPlan` (the named policies of
`core.policies` decide; nobody is let through because of who they work for) and hands it to
the one lake reader (`Lake.read_rows`) or the serving index (`core.serving.read_key`), which
apply its projection, masks and row filter. Every read is audited with the keys of the rows
it returned; the record is durable before the rows leave (`audit.record_read`).

A lookup by the whole primary key (`pk = v [and pk2 = w]`, no version, no cursor) is
answered from the serving index when it is at the resource's current version, with the same
checks, audit record and response; otherwise from the lake. Every committed load queues
the `serving.refresh` job (`core.serving.submit_refresh`) to bring the index up to date.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.core import audit, policies, quotas, serving
from minyun.core.errors import Invalid
from minyun.core.filters import BoolOp, Node, Test, kind_of, parse_filter, parse_sort
from minyun.core.lake import Lake
from minyun.core.policies import AccessPlan
from minyun.core.reading import MAX_LIMIT, RowsPage, key_texts, output_schema, reader_secret
from minyun.core.security import Principal

DEFAULT_LIMIT = 100
__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "RowsPage",
    "query_rows",
    "refresh_index",
]


def query_rows(
    session: Session,
    lake: Lake,
    actor: Principal,
    code: str,
    *,
    fields: str | None = None,
    filter: str | None = None,
    sort: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    version: int | None = None,
    purpose: str | None = None,
) -> RowsPage:
    """Rows of a resource as the reader's access plan shows them; audited with the rows' keys."""
    plan = catalog.access_data(session, actor, code, policies.READ, purpose=purpose)
    quotas.admit(session, plan)  # a grant's rate limit: 429 beyond it, audited
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    page = None
    if cursor is None and version is None and filter:
        page = _from_index(session, lake, plan, fields, filter, sort)
    if page is None:
        page = lake.read_rows(
            plan, secret=reader_secret(session), fields=fields, filter=filter, sort=sort,
            limit=limit, cursor=cursor, version=version,
        )  # fmt: skip
    audit.record_read(
        session,
        actor,
        policies.READ,
        target=code,
        target_type="resource",
        keys=page.keys,
        count=page.table.num_rows,
        purpose=plan.purpose,  # the caller's, else the grant's
        detail=_describe(plan, page, filter, sort),
    )
    return page


# --- the serving index ---------------------------------------------------------------------


def _from_index(
    session: Session,
    lake: Lake,
    plan: AccessPlan,
    fields: str | None,
    filter: str,
    sort: str | None,
) -> RowsPage | None:
    """The page of a whole-primary-key lookup from the serving index; None to read the lake.

    The index answers only when it is at the resource's current version, and then exactly
    as the lake would: same fields, types, masks, audit record and version.
    """
    version = plan.resource.lake_version
    primary_key = list(plan.resource.primary_key)
    if version is None or not primary_key or plan.row_filter is not None:
        return None
    try:
        wanted = _key_equalities(parse_filter(filter), primary_key)
    except Invalid:
        return None  # the lake read reports it
    if wanted is None or not set(primary_key) <= plan.clear:
        return None  # the lake read applies (or refuses) it
    schema = output_schema(lake, plan.code, version)
    shown = {f.name: kind_of(f.type) for f in schema if f.name in plan.visible}
    plan.require_clear([n for n, _ in parse_sort(sort, shown)], what="sort")  # as the lake would
    values: list[Any] = []
    for name in primary_key:
        if name not in schema.names:
            return None
        value = _key_value(wanted[name], schema.field(name).type)
        if value is None:
            return None
        values.append(value)
    selected = plan.fields_for([n.strip() for n in fields.split(",")] if fields else None)
    table = serving.read_key(
        session, plan, values, schema=schema, fields=selected, secret=reader_secret(session)
    )
    if table is None:
        return None
    keys = key_texts([[v] for v in values]) if table.num_rows else []
    return RowsPage(table, None, version, keys)


def _key_equalities(node: Node | None, primary_key: list[str]) -> dict[str, Any] | None:
    """{field: literal} when the filter is `pk1 = v1 and …` over exactly the primary key."""
    terms: list[Test] = []
    pending: list[Node | None] = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, BoolOp) and item.op == "and":
            pending.extend(item.items)
        elif isinstance(item, Test):
            terms.append(item)
        else:
            return None
    found: dict[str, Any] = {}
    for term in terms:
        if term.kind != "compare" or term.op != "=" or term.field.name in found:
            return None
        found[term.field.name] = term.values[0].value
    return found if sorted(found) == sorted(primary_key) else None


def _key_value(literal: Any, type_: pa.DataType) -> Any:
    """The key value a literal stands for, when it compares as the lake compares it."""
    kind = serving.key_kind(type_)
    if kind == "integer" and isinstance(literal, int) and not isinstance(literal, bool):
        return literal
    if kind == "string" and isinstance(literal, str):
        return literal
    if kind == "date" and isinstance(literal, str):
        try:
            return date.fromisoformat(literal)
        except ValueError:
            return None
    return None


def refresh_index(where: Session | serving.Transactions, lake: Lake, code: str) -> int:
    """Bring the serving index of resource `code` to its current version (rows written).

    `where` opens the refresh's short transactions (a sessionmaker's `begin`), or is a
    session whose savepoints hold them (tests). The `serving.refresh` job of a committed
    load does the same from the facts the load gave it (`serving.submit_refresh`).
    """
    begin = serving.savepoints(where) if isinstance(where, Session) else where
    with begin() as session:
        resource = catalog.get_resource(session, code)
        facts = serving.Facts(resource.id, resource.code, resource.lake_version)
        primary_key = _primary_key(session, resource)
    return serving.refresh(begin, lake, facts, primary_key)


def _describe(plan: AccessPlan, page: RowsPage, filter: str | None, sort: str | None) -> str:
    parts = [
        f"version={page.version}",
        f"fields={','.join(page.table.column_names)}",
        f"policy={plan.policy}",
    ]
    if plan.policy == "grant" and plan.reason:
        parts.append(plan.reason)  # "grant=<id>": which grant the read used
    if plan.masked:
        parts.append(f"masked={','.join(sorted(plan.masked))}")
    if filter:
        parts.append(f"filter={filter}")
    if sort:
        parts.append(f"sort={sort}")
    return "; ".join(parts)


def _primary_key(session: Session, resource: Any) -> list[str]:
    schema = catalog.current_schema(session, resource)
    pk = schema.descriptor.get("primaryKey") if schema is not None else None
    return [pk] if isinstance(pk, str) else [str(c) for c in pk or []]
