"""The hash-chained audit log: who, on whose behalf, did what to which records, why, when.

Each record stores `prev_hash`, the SHA-256 of the canonical JSON of the record before
it, and its own `hash`. Every CHECKPOINT_EVERY records the node signs the head of the
chain, so removing the newest records is caught too. `verify` walks the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from minyun.core import clock, context
from minyun.core.db import Base, UTCDateTime
from minyun.core.keys import NodeKey

if TYPE_CHECKING:
    from minyun.core.security import Principal

GENESIS = "0" * 64
CHECKPOINT_EVERY = 100
# Any 64-bit number, the same in every process: the advisory lock that serialises appends.
_PG_LOCK_KEY = 0x6D696E79756E


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILED = "failed"


class AuditRecord(Base):
    """One entry of the audit chain. Append-only: PostgreSQL refuses UPDATE and DELETE."""

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)
    on_behalf_of: Mapped[str | None] = mapped_column(String(100), default=None)
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(String(64), default=None)
    object_id: Mapped[str | None] = mapped_column(String(200), default=None)
    record_keys: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    record_count: Mapped[int | None] = mapped_column(BigInteger, default=None)
    purpose: Mapped[str | None] = mapped_column(Text, default=None)
    outcome: Mapped[str] = mapped_column(String(12))
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditCheckpoint(Base):
    """The node's signature over the chain head at `seq`."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(String(200))


HASHED_FIELDS = (
    "seq", "at", "actor", "on_behalf_of", "action", "object_type", "object_id",
    "record_keys", "record_count", "purpose", "outcome", "detail", "request_id",
    "client_ip", "prev_hash",
)  # fmt: skip


def canonical_json(record: AuditRecord) -> bytes:
    """The record as canonical JSON (sorted keys, no spaces, UTC microsecond time)."""
    doc: dict[str, Any] = {name: getattr(record, name) for name in HASHED_FIELDS}
    doc["at"] = record.at.isoformat(timespec="microseconds")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: AuditRecord) -> str:
    """SHA-256 of the record's canonical JSON."""
    return hashlib.sha256(canonical_json(record)).hexdigest()


def _lock_chain(session: Session) -> None:
    # Appenders queue here so two transactions can never both extend the same head.
    # SQLite needs nothing: every transaction starts with BEGIN IMMEDIATE (core.db).
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


@dataclass(frozen=True)
class Pending:
    """An audit entry that must outlive the transaction that failed."""

    actor: Principal
    action: str
    target: str | None = None
    target_type: str | None = None
    purpose: str | None = None
    outcome: Outcome = Outcome.DENIED
    detail: str | None = None

    def write(self, session: Session) -> AuditRecord:
        return record(
            session,
            self.actor,
            self.action,
            target=self.target,
            target_type=self.target_type,
            purpose=self.purpose,
            outcome=self.outcome,
            detail=self.detail,
        )


def record(
    session: Session,
    actor: Principal,
    action: str,
    *,
    target: str | None = None,
    target_type: str | None = None,
    keys: Sequence[str] | None = None,
    count: int | None = None,
    purpose: str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    detail: str | None = None,
    node_key: NodeKey | None = None,
) -> AuditRecord:
    """Append one record to the chain inside the caller's transaction."""
    _lock_chain(session)
    head = session.execute(
        select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    ).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    entry = AuditRecord(
        seq=seq,
        at=clock.now(),
        actor=actor.label,
        on_behalf_of=actor.on_behalf_of,
        action=action,
        object_type=target_type,
        object_id=target,
        record_keys=list(keys) if keys is not None else None,
        record_count=count if count is not None else (len(keys) if keys is not None else None),
        purpose=purpose,
        outcome=str(outcome),
        detail=detail,
        request_id=context.request_id.get(),
        client_ip=context.client_ip.get(),
        prev_hash=prev,
    )
    entry.hash = record_hash(entry)
    session.add(entry)
    key = node_key or session.info.get("node_key")
    if key is not None and seq % CHECKPOINT_EVERY == 0:
        session.add(checkpoint_for(entry, key))
    session.flush()
    return entry


def checkpoint_for(entry: AuditRecord, key: NodeKey) -> AuditCheckpoint:
    """A signed checkpoint of the chain head `entry`."""
    return AuditCheckpoint(
        seq=entry.seq,
        hash=entry.hash,
        at=clock.now(),
        key_id=key.kid,
        signature=key.sign(_checkpoint_message(entry.seq, entry.hash)),
    )


def checkpoint(session: Session, key: NodeKey) -> AuditCheckpoint | None:
    """Sign the current head now (also done automatically every CHECKPOINT_EVERY records)."""
    _lock_chain(session)
    head = session.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)).first()
    if head is None or session.get(AuditCheckpoint, head.seq) is not None:
        return None
    cp = checkpoint_for(head, key)
    session.add(cp)
    session.flush()
    return cp


def _checkpoint_message(seq: int, hash_: str) -> bytes:
    return f"minyun-audit-checkpoint:{seq}:{hash_}".encode()


class Problem(StrEnum):
    ALTERED = "altered"
    REMOVED = "removed"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    BAD_CHECKPOINT = "bad-checkpoint"


@dataclass(frozen=True)
class Finding:
    problem: Problem
    seq: int
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    records: int
    checkpoints: int
    first_problem: Finding | None

    @property
    def ok(self) -> bool:
        return self.first_problem is None


def _iter_records(session: Session, batch: int = 5000) -> Iterator[AuditRecord]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditRecord).where(AuditRecord.seq > last).order_by(AuditRecord.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session, key: NodeKey) -> VerifyReport:
    """Walk the chain and report the first altered, removed, inserted or reordered record."""
    checkpoints = {cp.seq: cp for cp in session.scalars(select(AuditCheckpoint))}
    by_hash: dict[str, int] = {}
    prev_hash, expected_seq, count = GENESIS, 1, 0
    finding: Finding | None = None
    for entry in _iter_records(session):
        count += 1
        if finding is not None:
            continue
        finding = _check_entry(entry, expected_seq, prev_hash, by_hash, checkpoints, key)
        by_hash[entry.hash] = entry.seq
        prev_hash, expected_seq = entry.hash, entry.seq + 1
    if finding is None:
        finding = _check_checkpoints(checkpoints, expected_seq - 1, key)
    return VerifyReport(records=count, checkpoints=len(checkpoints), first_problem=finding)


def _check_entry(
    entry: AuditRecord,
    expected_seq: int,
    prev_hash: str,
    seen: dict[str, int],
    checkpoints: dict[int, AuditCheckpoint],
    key: NodeKey,
) -> Finding | None:
    actual = record_hash(entry)
    if actual != entry.hash:
        return Finding(Problem.ALTERED, entry.seq, "content does not match its hash")
    if entry.prev_hash != prev_hash:
        if entry.prev_hash in seen:
            return Finding(
                Problem.REORDERED,
                entry.seq,
                f"follows record {seen[entry.prev_hash]}, not record {expected_seq - 1}",
            )
        if entry.seq > expected_seq:
            return Finding(
                Problem.REMOVED, expected_seq, f"records {expected_seq}..{entry.seq - 1} missing"
            )
        return Finding(Problem.INSERTED, entry.seq, "does not follow the record before it")
    if entry.seq != expected_seq:
        return Finding(Problem.INSERTED, entry.seq, f"expected sequence {expected_seq}")
    cp = checkpoints.get(entry.seq)
    if cp is not None and (
        cp.hash != entry.hash or not key.verify(_checkpoint_message(cp.seq, cp.hash), cp.signature)
    ):
        return Finding(Problem.BAD_CHECKPOINT, entry.seq, "signed checkpoint does not match")
    return None


def _check_checkpoints(
    checkpoints: dict[int, AuditCheckpoint], last_seq: int, key: NodeKey
) -> Finding | None:
    beyond = [cp for cp in checkpoints.values() if cp.seq > last_seq]
    if not beyond:
        return None
    cp = min(beyond, key=lambda c: c.seq)
    if key.verify(_checkpoint_message(cp.seq, cp.hash), cp.signature):
        return Finding(
            Problem.TRUNCATED,
            last_seq + 1,
            f"a signed checkpoint covers record {cp.seq} but the chain ends at {last_seq}",
        )
    return Finding(Problem.BAD_CHECKPOINT, cp.seq, "checkpoint signature is not valid")
