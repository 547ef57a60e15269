"""The EPCIS events in the lake: one append-only Delta table, written and read through core.

`<lake>/resources/food-epcis-events` gets one append commit per capture
(`Lake.commit_rows(mode="append")`, the capture job's id as the load id: `find_commits`
finds a capture's commit by it). Rows are never updated or deleted: a correction is a new
event with an error declaration, as EPCIS itself says. Reading goes through
`core.security.authorize` → `AccessPlan` → `Lake.read_table` like every lake read; only
rows of committed captures count (a capture whose control-plane transaction failed after
its lake commit left rows no index knows).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.food.batch import EventBatch
from minyun.apps.food.models import CaptureJob
from minyun.core.lake import Lake, LoadRecord
from minyun.core.policies import DataResource, FieldFacts
from minyun.core.reading import reader_secret
from minyun.core.security import Principal, authorize

CODE = "food-epcis-events"
SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("event_type", pa.string()),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("record_time", pa.timestamp("us", tz="UTC")),
        pa.field("capture", pa.int64()),
        pa.field("organization_id", pa.int64()),
        pa.field("body", pa.string()),
    ]
)
RESOURCE = DataResource(
    id=0,
    code=CODE,
    provider_id=None,
    status="published",
    sharing_type="conditional",
    open_type="none",
    fields=tuple(FieldFacts(f.name, "sensitive") for f in SCHEMA),
    primary_key=("event_id",),
)


def append(lake: Lake, capture: int, batch: EventBatch) -> int:
    """Append one capture's batch as one Delta commit; the table version."""
    events = batch.events
    # {"event": <body>, "context": <prefixes>} put together column-wise from the batch's text.
    body = pc.binary_join_element_wise(
        '{"event":', events.column("body"), ',"context":', events.column("context"), "}", ""
    )
    table = pa.table(
        {
            "event_id": events.column("event_id"),
            "event_type": events.column("event_type"),
            "event_time": events.column("event_time"),
            "record_time": events.column("record_time"),
            "capture": pa.array([capture] * events.num_rows, pa.int64()),
            "organization_id": events.column("organization_id"),
            "body": body,
        },
        schema=SCHEMA,
    )
    load = LoadRecord(load_id=capture, rows_read=table.num_rows, rows_accepted=table.num_rows)
    return lake.commit_rows(CODE, load, mode="append", data=pa.RecordBatchReader.from_batches(
        SCHEMA, table.to_batches()))  # fmt: skip


def read_events(session: Session, lake: Lake, *, purpose: str) -> list[dict[str, Any]]:
    """Every stored event of committed captures, from the lake (system reads: rebuilds,
    exports), in capture order."""
    if not lake.exists(CODE):
        return []
    actor = Principal.system(on_behalf_of="food")
    plan = authorize(session, actor, "resource.read", resource=RESOURCE, purpose=purpose)
    table = lake.read_table(plan, secret=reader_secret(session))
    committed = set(session.scalars(select(CaptureJob.id).where(CaptureJob.success.is_(True))))
    rows = sorted(
        (r for r in table.to_pylist() if r["capture"] in committed),
        key=lambda r: (r["capture"], r["record_time"]),
    )
    return [json.loads(r["body"])["event"] for r in rows]
