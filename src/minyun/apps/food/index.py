"""The query index's bulk write: a document's batch into `food_events` and `food_event_terms`.

One statement per table, whatever the document's size: on PostgreSQL the Arrow batch is
written as CSV into `COPY … FROM STDIN` (no per-row statement, no parameter binding), on
SQLite one `executemany`. The events' primary keys are taken first in one query (from the
sequence on PostgreSQL) and put on the terms with one Arrow `take`, so nothing is read
back. A repeated eventID raises the unique constraint's IntegrityError; the caller's
savepoint then leaves nothing behind.
"""

from __future__ import annotations

import io
from typing import Any, cast

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import (
    Connection,
    Float,
    Integer,
    String,
    column,
    func,
    insert,
    select,
    table,
    text,
)
from sqlalchemy.exc import IntegrityError

from minyun.apps.food.batch import EVENTS, EventBatch
from minyun.apps.food.models import FoodEvent
from minyun.core.db import UTCDateTime

_TIMES = ("event_time", "record_time", "error_time")
_INTS = ("capture_id", "organization_id")
# The index tables as lightweight clauses: their JSON columns take the batch's text as is.
_EVENTS = table(
    "food_events",
    column("id", Integer()),
    *(
        column(name, UTCDateTime() if name in _TIMES else Integer() if name in _INTS else String())
        for name in EVENTS.names
    ),
)
_TERMS = table(
    "food_event_terms",
    column("event_pk", Integer()),
    column("kind", String()),
    column("value", String()),
    column("number", Float()),
)


def append(connection: Connection, batch: EventBatch) -> None:
    """Write a batch's events and terms; IntegrityError if an eventID is already stored."""
    n = batch.events.num_rows
    if n == 0:
        return
    ids = pa.array(_reserve(connection, n), pa.int64())
    events = batch.events.add_column(0, "id", ids)
    terms = pa.table(
        {
            "event_pk": pc.take(ids, batch.terms.column("event")),
            "kind": batch.terms.column("kind"),
            "value": batch.terms.column("value"),
            "number": batch.terms.column("number"),
        }
    )
    if connection.dialect.name == "postgresql":
        _copy(connection, "food_events", events)
        if terms.num_rows:
            _copy(connection, "food_event_terms", terms)
        return
    connection.execute(insert(_EVENTS), events.to_pylist())
    if terms.num_rows:
        connection.execute(insert(_TERMS), terms.to_pylist())


def _reserve(connection: Connection, n: int) -> list[int]:
    """`n` new primary keys of `food_events`, in one round trip."""
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            text("SELECT nextval(pg_get_serial_sequence('food_events', 'id')) "
                 "FROM generate_series(1, :n)"), {"n": n},
        ).scalars()  # fmt: skip
        return list(found)
    # SQLite: the capture's transaction already wrote (its job), so it holds the database's
    # write lock and no other writer can take these keys before it commits.
    top = connection.execute(select(func.coalesce(func.max(FoodEvent.id), 0))).scalar_one()
    return list(range(top + 1, top + n + 1))


def _copy(connection: Connection, name: str, data: pa.Table) -> None:
    """`COPY name (columns) FROM STDIN` of an Arrow table, in the connection's transaction."""
    buffer = io.BytesIO()
    pacsv.write_csv(data, buffer, write_options=pacsv.WriteOptions(include_header=False))
    columns = ", ".join(data.column_names)
    raw = cast(psycopg.Connection[Any], connection.connection.driver_connection)
    statement = f"COPY {name} ({columns}) FROM STDIN (FORMAT csv)"
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(buffer.getvalue())
    except psycopg.errors.UniqueViolation as exc:
        raise IntegrityError(statement, None, exc) from exc
