"""A captured document's events as one Arrow batch: the index rows, their terms, the lake rows.

Capture works on a whole document at once (decision 0015): each event gets its eventID (the
CBV hash when it has none), its recordTime and its canonical identifiers in one pass over
the events, and the result is columnar — `EventBatch.events` (one row per event: the
columns the standard queries compare, the body as stored) and `EventBatch.terms` (one row
per repeated fact, pointing at its event by position) — so the index takes it in one bulk
write per table and the lake in one Delta commit, with no round trip per event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from minyun.apps.food import epcis, gs1

TIME = pa.timestamp("us", tz="UTC")
EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("event_type", pa.string()),
        pa.field("event_time", TIME),
        pa.field("record_time", TIME),
        pa.field("action", pa.string()),
        pa.field("biz_step", pa.string()),
        pa.field("disposition", pa.string()),
        pa.field("read_point", pa.string()),
        pa.field("biz_location", pa.string()),
        pa.field("transformation_id", pa.string()),
        pa.field("error_time", TIME),
        pa.field("error_reason", pa.string()),
        pa.field("capture_id", pa.int64()),
        pa.field("organization_id", pa.int64()),
        pa.field("body", pa.string()),
        pa.field("context", pa.string()),
    ]
)
TERMS = pa.schema(
    [
        pa.field("event", pa.int32()),  # the event's position in the batch
        pa.field("kind", pa.string()),
        pa.field("value", pa.string()),
        pa.field("number", pa.float64()),
    ]
)


@dataclass(frozen=True)
class EventBatch:
    """A document's events ready to store: index rows, their terms, each event's id."""

    events: pa.Table
    terms: pa.Table

    @property
    def ids(self) -> list[str]:
        """The events' eventIDs, in the document's order."""
        ids: list[str] = self.events.column("event_id").to_pylist()
        return ids


def prepare(
    events: Sequence[Mapping[str, Any]],
    context: dict[str, str],
    *,
    capture: int,
    organization_id: int | None,
    now: datetime,
) -> EventBatch:
    """The batch of a document's (schema-valid) events, recorded at `now` by capture
    `capture`."""
    record_time = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    context_text = json.dumps(context, ensure_ascii=False, separators=(",", ":"))
    cols: dict[str, list[Any]] = {name: [] for name in EVENTS.names}
    terms: dict[str, list[Any]] = {name: [] for name in TERMS.names}
    for position, event in enumerate(events):
        body = dict(event)
        body["eventID"] = body.get("eventID") or epcis.event_hash_id(body, context)
        body["recordTime"] = record_time
        _columns(cols, body)
        for term in epcis.terms(body):
            terms["event"].append(position)
            terms["kind"].append(term.kind[:120])
            terms["value"].append(term.value[:500])
            terms["number"].append(term.number)
    n = len(cols["event_id"])
    cols["record_time"] = [now] * n
    cols["capture_id"] = [capture] * n
    cols["organization_id"] = [organization_id] * n
    cols["context"] = [context_text] * n
    table = pa.Table.from_pydict(cols, schema=EVENTS)
    _check_lengths(table)
    return EventBatch(table, pa.Table.from_pydict(terms, schema=TERMS))


# The index's text columns: what the standard calls them, and their widths (FoodEvent).
_WIDTHS = {"event_id": ("eventID", 300), "biz_step": ("bizStep", 300),
           "disposition": ("disposition", 300), "read_point": ("readPoint", 300),
           "biz_location": ("bizLocation", 300), "transformation_id": ("transformationID", 300),
           "error_reason": ("errorDeclaration.reason", 300)}  # fmt: skip


def _check_lengths(table: pa.Table) -> None:
    """ValueError naming the first value too long for the index (checked column-wise)."""
    for name, (label, width) in _WIDTHS.items():
        lengths = pc.utf8_length(table.column(name))
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > width:
            row = pc.index(pc.greater(lengths, width), True).as_py()
            raise ValueError(
                f"epcisBody/eventList/{row}: {label} is longer than {width} characters"
            )


def _columns(cols: dict[str, list[Any]], body: dict[str, Any]) -> None:
    error = body.get("errorDeclaration") or {}
    read_point, location = body.get("readPoint"), body.get("bizLocation")
    cols["event_id"].append(body["eventID"])
    cols["event_type"].append(body["type"])
    cols["event_time"].append(epcis.parse_time(body["eventTime"]))
    cols["action"].append(body.get("action"))
    cols["biz_step"].append(_short("bizStep", body.get("bizStep")))
    cols["disposition"].append(_short("disposition", body.get("disposition")))
    cols["read_point"].append(gs1.canonical(read_point["id"]) if read_point else None)
    cols["biz_location"].append(gs1.canonical(location["id"]) if location else None)
    cols["transformation_id"].append(body.get("transformationID"))
    cols["error_time"].append(epcis.parse_time(error["declarationTime"]) if error else None)
    cols["error_reason"].append(_short("errorReason", error.get("reason")))
    cols["body"].append(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def _short(kind: str, value: str | None) -> str | None:
    return epcis.cbv_short(kind, value) if value else None
