"""A resource's changed rows between two lake versions, read through an `AccessPlan`.

`Lake.follow_changes(plan, since=…)` is how a job follows a resource (e-licences issued in
step with a department's data): from the Delta Change Data Feed when it covers the versions
after `since` (appends, MERGE upserts and deletes), otherwise — a first read, an overwrite,
a schema change, a feed vacuumed away — as the whole table at the target version, marked
`complete` so the caller treats every key it does not see as gone.

Like the other readers, the plan's projection, masks and row filter are applied inside
DuckDB's query. The primary key must be shown in clear: changes are told by key. A key
whose newest image no longer passes the plan's row filter is reported gone: it has left the
reader's view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from minyun.core.errors import Forbidden, NotFound
from minyun.core.filters import compile_node, kind_of, quote
from minyun.core.masks import parse_mask, pseudonym_key
from minyun.core.policies import AccessPlan

if TYPE_CHECKING:
    from minyun.core.lake import Lake

GONE = "_gone"
VERSION = "_commit_version"


@dataclass(frozen=True)
class Changes:
    """The newest image of every changed key (`rows`, with `_gone`), up to `version`."""

    rows: pa.Table
    version: int
    complete: bool  # rows is the whole table: a key not in it is gone


def read_changes(
    lake: Lake, plan: AccessPlan, *, secret: bytes, since: int | None, until: int | None = None
) -> Changes:
    """The rows `plan` opens that changed after version `since` up to `until` (the newest)."""
    target = plan.resource.lake_version if until is None else until
    if target is None:
        raise NotFound(f"resource {plan.code} has no data yet")
    keys = list(plan.resource.primary_key)
    if not keys or not set(keys) <= plan.clear:
        raise Forbidden(f"changes of {plan.code} need its primary key in clear")
    if since is not None and since >= target:
        empty = _query(lake, plan, secret, None, target, keys)
        return Changes(empty.slice(0, 0), target, complete=False)
    feed = None if since is None else _feed(lake, plan.code, since, target)
    rows = _query(lake, plan, secret, feed, target, keys)
    return Changes(rows, target, complete=feed is None)


def _feed(lake: Lake, code: str, since: int, target: int) -> pa.Table | None:
    """The Change Data Feed after `since` up to `target` (`Lake.change_feed`), or None where
    it does not cover them (then the whole table is read)."""
    return lake.change_feed(code, since, target)


def _query(
    lake: Lake,
    plan: AccessPlan,
    secret: bytes,
    feed: pa.Table | None,
    target: int,
    keys: list[str],
) -> pa.Table:
    from minyun.core.reading import _duckdb

    con = _duckdb().cursor()
    try:
        if feed is None:
            source: Any = lake.dataset(plan.code, version=target)
            con.register("src", source)
            base = f"SELECT *, FALSE AS __deleted, {target}::BIGINT AS {VERSION} FROM src"
        else:
            con.register("feed", feed)
            base = f"""SELECT * EXCLUDE (_change_type), _change_type = 'delete' AS __deleted
                FROM feed WHERE _change_type <> 'update_preimage'
                QUALIFY row_number() OVER (
                    PARTITION BY {", ".join(quote(k) for k in keys)}
                    ORDER BY {VERSION} DESC, (_change_type = 'delete') ASC) = 1"""
        columns = {f.name: kind_of(f.type) for f in lake.dataset(plan.code, version=target).schema}
        params: list[Any] = []
        passes = compile_node(plan.row_filter, columns, params) if plan.row_filter else "TRUE"
        mask_key = pseudonym_key(secret, plan.consumer)
        selected = [n for n in plan.visible if n in columns]
        projection = ", ".join(_select(plan, n, mask_key) for n in selected)
        sql = (
            f"SELECT {projection}, (__deleted OR NOT coalesce({passes}, FALSE)) AS {GONE}, "
            f"{VERSION} FROM ({base}) c"
        )
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()


def _select(plan: AccessPlan, name: str, mask_key: bytes) -> str:
    spec = plan.masked.get(name)
    if spec is None:
        return quote(name)
    return f"{parse_mask(spec).sql(quote(name), key=mask_key)} AS {quote(name)}"
