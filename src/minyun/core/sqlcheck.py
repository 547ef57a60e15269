"""Whether DuckDB, the engine every load runs in, accepts a constant SQL expression.

A schema's constraints become SQL constants in every load (`ingest.validate`): a pattern
DuckDB's regular-expression engine (RE2) refuses, or a minimum that is not a value of its
field's type, would be saved and then break each load. The catalog asks here when the
schema is set, so it is refused there, with the field named.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import duckdb

_lock = threading.Lock()
_engine: duckdb.DuckDBPyConnection | None = None


def refusal(expression: str, params: Sequence[object] = ()) -> str | None:
    """DuckDB's reason for refusing to evaluate `expression` (no table, no column); None if
    it evaluates. Only the first line of DuckDB's message is kept."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = duckdb.connect()
        cursor = _engine.cursor()
    try:
        # Only whether it is null is fetched: a value of some types (TIMESTAMPTZ) would
        # need more Python modules to come back.
        cursor.execute(f"SELECT ({expression}) IS NULL", list(params)).fetchall()
    except duckdb.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    finally:
        cursor.close()
    return None
