"""Online services (在线调用) a signed-in user calls from the web, as a client calls the API.

- `query`: the rows matching a filter of the query language (`city = '福州市' and age >= 60`),
  within the grant's rows, filtered only on fields the reader sees in clear; SQL is refused
  by the filter parser (`core.filters`), not by string checks.
- `lookup`: one record by its key (a person by identity number, an enterprise by credit
  code), shown as the reader's access plan allows: the grant's fields, clear up to its
  clearance, masked above it; audited with its purpose, counted on the grant's rate limit.
  It is the row query of `minyun.query` with the key as its filter, the path the API's key
  lookup takes for a browser session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.core import policies
from minyun.core.errors import Invalid, NotFound
from minyun.core.filters import quote
from minyun.core.lake import Lake
from minyun.core.security import Principal
from minyun.exchange.service import _schema_kinds, field_titles
from minyun.query import service as query

KEY_MAX = 200
PURPOSE_MAX = 500


@dataclass(frozen=True)
class Looked:
    """A lookup's answer: the row (None: no such key in the reader's rows) and how it shows."""

    code: str
    key_field: str
    row: dict[str, Any] | None
    titles: dict[str, str]
    masked: frozenset[str]
    version: int | None


@dataclass(frozen=True)
class Lookup:
    """What the lookup form needs of a resource before any key is typed."""

    code: str
    name: str
    key_field: str
    key_title: str
    fields: list[str]
    masked: frozenset[str]


def prepare(session: Session, actor: Principal, code: str) -> Lookup:
    """The lookup of a resource the actor may read (refused and audited otherwise)."""
    plan = catalog.access_data(session, actor, code, policies.READ)
    resource = catalog.access_resource(session, actor, code)
    key = _key_field(plan.resource.primary_key, code)
    titles = field_titles(session, resource)
    return Lookup(code, resource.name, key, titles.get(key, key), plan.visible,
                  frozenset(plan.masked))  # fmt: skip


def lookup(
    session: Session, lake: Lake, actor: Principal, code: str, key: str, *, purpose: str | None
) -> Looked:
    """The record of `key`, as the actor's plan shows it; audited with the purpose."""
    key = key.strip()
    if not key or len(key) > KEY_MAX:
        raise Invalid(f"give a key of 1 to {KEY_MAX} characters", field="key")
    purpose = (purpose or "").strip() or None
    if purpose is not None and len(purpose) > PURPOSE_MAX:
        raise Invalid(f"purpose: at most {PURPOSE_MAX} characters", field="purpose")
    resource = catalog.access_resource(session, actor, code)
    plan = catalog.access_data(session, actor, code, policies.READ, purpose=purpose)
    field = _key_field(plan.resource.primary_key, code)
    literal = key if _schema_kinds(session, resource).get(field) == "integer" and key.isdigit() \
        else "'" + key.replace("'", "''") + "'"  # fmt: skip
    page = query.query_rows(
        session, lake, actor, code, filter=f"{quote(field)} = {literal}", limit=1, purpose=purpose
    )
    rows = page.table.to_pylist()
    return Looked(code, field, rows[0] if rows else None, field_titles(session, resource),
                  frozenset(plan.masked), page.version)  # fmt: skip


def _key_field(primary_key: tuple[str, ...], code: str) -> str:
    if len(primary_key) != 1:
        raise NotFound(f"resource {code} has no single-field key to look up by")
    return primary_key[0]


QUERY_ROWS = 50


@dataclass(frozen=True)
class Queried:
    """A filtered query's first page, as the reader's plan shows it."""

    columns: list[str]
    rows: list[dict[str, Any]]
    titles: dict[str, str]
    masked: frozenset[str]
    version: int | None
    more: bool


def query_page(
    session: Session,
    lake: Lake,
    actor: Principal,
    code: str,
    *,
    filter: str,
    sort: str | None,
    purpose: str | None,
) -> Queried:
    """Up to QUERY_ROWS rows matching `filter` (required), audited with the purpose."""
    text = filter.strip()
    if not text:
        raise Invalid("give a filter, e.g. city = '福州市'", field="filter")
    purpose = (purpose or "").strip() or None
    resource = catalog.access_resource(session, actor, code)
    plan = catalog.access_data(session, actor, code, policies.READ, purpose=purpose)
    page = query.query_rows(session, lake, actor, code, filter=text, sort=(sort or "").strip()
                            or None, limit=QUERY_ROWS, purpose=purpose)  # fmt: skip
    return Queried(page.table.column_names, page.table.to_pylist(),
                   field_titles(session, resource), frozenset(plan.masked), page.version,
                   page.next_cursor is not None)  # fmt: skip
