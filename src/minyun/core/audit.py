"""The hash-chained audit log: who, on whose behalf, did what to which records, why, when.

Each record stores `prev_hash`, the SHA-256 of the canonical JSON of the record before
it, and its own `hash`. Two ways in, both serialised on one chain lock:

- `record` appends inside the caller's transaction: a change and its record commit
  together or not at all. When that transaction commits, the node signs its head.
- `record_read` hands the entry to this process's `GroupAppender`, which appends many
  entries in one transaction, signs that batch's head, and returns only once the batch
  has committed: a read's data never leaves before its record is durable.

Every signed head is also a checkpoint row and a line of the heads file outside the
database (`<var>/audit/heads.log`), so rewriting or truncating the newest records is
caught too. `verify` walks the chain against both. See docs/decisions/0002 and 0005.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Engine,
    Integer,
    String,
    Text,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from minyun.core import clock, context
from minyun.core.db import Base, UTCDateTime, libpq_url, on_commit
from minyun.core.keys import NodeKey

if TYPE_CHECKING:
    from minyun.core.audit_pg import LoopWriter
    from minyun.core.security import Principal

log = logging.getLogger(__name__)

GENESIS = "0" * 64
HEADS_FILE = Path("audit") / "heads.log"
# Any 64-bit number, the same in every process: the advisory lock that serialises appends.
_PG_LOCK_KEY = 0x6D696E79756E
# session.info keys: this transaction holds the chain lock / appended and signs its head.
_LOCKED = "audit_chain_locked"
_SIGN = "audit_sign_head"


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


# One encoder for every canonical text (`json.dumps` with options builds a new one per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(doc: Mapping[str, Any]) -> bytes:
    body = {name: doc[name] for name in HASHED_FIELDS}
    body["at"] = doc["at"].isoformat(timespec="microseconds")
    return _CANONICAL.encode(body).encode()


def canonical_json(record: AuditRecord) -> bytes:
    """The record as canonical JSON (sorted keys, no spaces, UTC microsecond time)."""
    return _canonical({name: getattr(record, name) for name in HASHED_FIELDS})


def record_hash(record: AuditRecord) -> str:
    """SHA-256 of the record's canonical JSON."""
    return hashlib.sha256(canonical_json(record)).hexdigest()


@dataclass(frozen=True)
class Entry:
    """An audit record before it has its place in the chain.

    The request's id and client address are taken when the entry is made: the appender
    thread that writes it does not see the request's context variables.
    """

    actor: str
    action: str
    on_behalf_of: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    record_keys: list[str] | None = None
    record_count: int | None = None
    purpose: str | None = None
    outcome: str = Outcome.SUCCESS.value
    detail: str | None = None
    request_id: str | None = field(default_factory=context.request_id.get)
    client_ip: str | None = field(default_factory=context.client_ip.get)
    at: datetime = field(default_factory=clock.now)

    @classmethod
    def of(
        cls,
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
    ) -> Entry:
        """The entry for `actor` doing `action`, stamped with the current request and time."""
        return cls(
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
        )

    def row(self, seq: int, prev_hash: str) -> dict[str, Any]:
        """The record's column values at position `seq` after `prev_hash`, with its hash."""
        # Field by field rather than `asdict`, whose deep copy costs three times the hash;
        # the batch is hashed while it holds the chain lock.
        doc = {name: getattr(self, name) for name in _ENTRY_FIELDS}
        if self.record_keys is not None:
            doc["record_keys"] = list(self.record_keys)
        doc["seq"], doc["prev_hash"] = seq, prev_hash
        doc["hash"] = hashlib.sha256(_canonical(doc)).hexdigest()
        return doc

    def parts(self) -> tuple[str, str]:
        """The record's canonical JSON around the two values its place in the chain gives:
        `before` ‖ prev_hash ‖ `between` ‖ seq ‖ `}` is the text `row` hashes (sorted keys:
        `prev_hash` follows `outcome`, `seq` comes last). PostgreSQL's batch step
        (`minyun_audit_append_docs`) chains with it and stores the columns it reads back
        from that text, so what is stored is what was hashed."""
        doc: dict[str, Any] = {name: getattr(self, name) for name in _PARTS_FIELDS}
        doc["at"] = self.at.isoformat(timespec="microseconds")
        if self.record_keys is not None:
            doc["record_keys"] = list(self.record_keys)
        doc["prev_hash"] = _GAP
        # One pass of the encoder, cut at the placeholder: inside a string value every
        # quote is escaped, so `"prev_hash":"…"` can only be the key itself.
        text = _CANONICAL.encode(doc)
        head, found, tail = text.partition(_GAP_TEXT)
        if not found:
            raise AssertionError("the canonical text lost its prev_hash")
        return head + '"prev_hash":"', '"' + tail[:-1] + ',"seq":'


_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))
_PARTS_FIELDS = tuple(name for name in HASHED_FIELDS if name not in ("seq", "prev_hash"))
_GAP = "~" * 64  # where the previous record's hash goes (never a hash: not hex)
_GAP_TEXT = f'"prev_hash":"{_GAP}"'


def _lock_chain(db: Session | Connection) -> None:
    # Appenders queue here so two transactions can never both extend the same head; the
    # lock is the same in every process of the node. SQLite needs nothing: every
    # transaction starts with BEGIN IMMEDIATE (core.db).
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    if dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


_HEAD = select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)


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
    """Append one record to the chain inside the caller's transaction; its commit signs the head."""
    item = Entry.of(
        actor,
        action,
        target=target,
        target_type=target_type,
        keys=keys,
        count=count,
        purpose=purpose,
        outcome=outcome,
        detail=detail,
    )
    return _append_here(session, item, node_key)


def _append_here(session: Session, item: Entry, node_key: NodeKey | None = None) -> AuditRecord:
    """Append `item` to the chain inside the session's transaction (signed when it commits)."""
    if not session.info.get(_LOCKED):
        _lock_chain(session)
        session.info[_LOCKED] = True
    head = session.execute(_HEAD).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    entry = AuditRecord(**item.row(seq, prev))
    session.add(entry)
    key = node_key or session.info.get("node_key")
    if key is not None:
        session.info[_SIGN] = key
    session.flush()
    return entry


def record_read(
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
) -> int:
    """Audit a read durably before its data leaves; returns the record's sequence number.

    With this process's appender (`session.info["audit_appender"]`) the entry is
    group-committed and this call returns once its batch has committed. Without one, or
    when the caller's transaction already holds the chain (it recorded a change, or on
    SQLite, whose every transaction holds the one write lock), the record is appended in
    the caller's transaction, which commits before the response is sent.
    """
    item = Entry.of(
        actor,
        action,
        target=target,
        target_type=target_type,
        keys=keys,
        count=count,
        purpose=purpose,
        outcome=outcome,
        detail=detail,
    )
    appender = session.info.get("audit_appender")
    if isinstance(appender, GroupAppender) and _can_hand_off(session):
        return appender.append(item)
    return _append_here(session, item).seq


def _can_hand_off(session: Session) -> bool:
    # Waiting for the appender while holding what it needs would wait forever.
    return not session.info.get(_LOCKED) and session.get_bind().dialect.name != "sqlite"


def _checkpoint_message(seq: int, hash_: str) -> bytes:
    return f"minyun-audit-checkpoint:{seq}:{hash_}".encode()


def checkpoint_for(entry: AuditRecord, key: NodeKey) -> AuditCheckpoint:
    """A signed checkpoint of the chain head `entry`."""
    return _signed(entry.seq, entry.hash, key)


def _signed(seq: int, hash_: str, key: NodeKey) -> AuditCheckpoint:
    return AuditCheckpoint(
        seq=seq,
        hash=hash_,
        at=clock.now(),
        key_id=key.kid,
        signature=key.sign(_checkpoint_message(seq, hash_)),
    )


def checkpoint(session: Session, key: NodeKey) -> AuditCheckpoint | None:
    """Sign the current head now (commits of appends sign their heads by themselves)."""
    if not session.info.get(_LOCKED):
        _lock_chain(session)
        session.info[_LOCKED] = True
    head = session.execute(_HEAD).first()
    if head is None or session.get(AuditCheckpoint, head[0]) is not None:
        return None
    cp = _signed(head[0], head[1], key)
    session.add(cp)
    session.flush()
    _witness_after_commit(session, cp)
    return cp


def _witness_after_commit(session: Session, cp: AuditCheckpoint) -> None:
    heads = session.info.get("audit_heads")
    if isinstance(heads, HeadsLog):
        signed = Head(cp.seq, cp.hash, cp.key_id, cp.signature)
        on_commit(session, lambda: heads.append(signed))


def _sign_transaction_head(session: Session) -> None:
    # The head is read again here: a savepoint rolled back may have dropped the last record.
    key = session.info.pop(_SIGN, None)
    if not isinstance(key, NodeKey):
        return
    head = session.execute(_HEAD).first()
    if head is None or session.get(AuditCheckpoint, head[0]) is not None:
        return
    cp = _signed(head[0], head[1], key)
    session.add(cp)
    _witness_after_commit(session, cp)


def _forget_lock(session: Session, *_: Any) -> None:
    session.info.pop(_LOCKED, None)
    session.info.pop(_SIGN, None)


def _forget_lock_after_rollback(session: Session, previous: SessionTransaction) -> None:
    # A savepoint's rollback keeps the transaction, and PostgreSQL keeps its xact lock.
    if previous.parent is None:
        _forget_lock(session)


event.listen(Session, "before_commit", _sign_transaction_head)
event.listen(Session, "after_commit", _forget_lock)
event.listen(Session, "after_soft_rollback", _forget_lock_after_rollback)


# --- the heads file ----------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """A signed chain head, as kept outside the database."""

    seq: int
    hash: str
    key_id: str
    signature: str

    def line(self) -> bytes:
        return f"{self.seq} {self.hash} {self.key_id} {self.signature}\n".encode()

    def valid(self, key: NodeKey) -> bool:
        return key.verify(_checkpoint_message(self.seq, self.hash), self.signature)


# How long a head may sit in the page cache before the heads file is fsynced.
HEADS_SYNC_SECONDS = 0.01


class HeadsLog:
    """An append-only file of signed heads beside the database: one line per head.

    Several processes append to it with O_APPEND (each line is one write, so lines never
    interleave); lines may be out of sequence order across processes.

    A head is written (one `write`, so it outlives the process at once) before its batch's
    callers are released; a background thread fsyncs the file at most `sync_seconds`
    later, for every head written meanwhile, and `close` fsyncs what is left. The records
    themselves are durable in the database's commit; the file is their witness, and an
    fsync per batch on the request's event loop cost more than the whole lookup
    (decision 0005). `sync_seconds=0` fsyncs inside `append`.
    """

    def __init__(self, path: Path, *, sync_seconds: float = HEADS_SYNC_SECONDS) -> None:
        self.path = path
        self.sync_seconds = sync_seconds
        self.syncs = 0
        self._fd: int | None = None
        self._lock = threading.Lock()  # writes, opening and closing the file
        self._dirty = threading.Event()
        self._syncer: threading.Thread | None = None
        self._closed = False

    def append(self, *heads: Head) -> None:
        """Add signed heads in one write; on disk within `sync_seconds`."""
        with self._lock:
            fd = self._open()
            os.write(fd, b"".join(head.line() for head in heads))
            if self.sync_seconds <= 0:
                os.fsync(fd)
                self.syncs += 1
                return
            self._dirty.set()
            if self._syncer is None:
                self._syncer = threading.Thread(
                    target=self._sync_loop, name="audit-heads-sync", daemon=True
                )
                self._syncer.start()

    def sync(self) -> None:
        """Put every head written so far on disk now."""
        with self._lock:
            self._sync_locked()

    def _sync_locked(self) -> None:
        if self._fd is not None and self._dirty.is_set():
            self._dirty.clear()
            os.fsync(self._fd)
            self.syncs += 1

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            if self._closed or self._syncer is not threading.current_thread():
                return  # closed (and maybe opened again, with a thread of its own)
            time.sleep(self.sync_seconds)  # gather the heads of the next few batches
            try:
                self.sync()
            except OSError:
                log.exception("fsync of the audit heads file %s failed", self.path)

    def _open(self) -> int:
        if self._fd is None:
            self._closed = False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        return self._fd

    def read(self) -> tuple[dict[int, Head], list[int]]:
        """Heads by sequence number, and the numbers of lines that are not a head.

        A last line without its newline is a write cut short by a crash, not tampering.
        """
        heads: dict[int, Head] = {}
        unreadable: list[int] = []
        if not self.path.exists():
            return heads, unreadable
        with self.path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    break
                head = _parse_head(raw)
                if head is None:
                    unreadable.append(number)
                else:
                    heads[head.seq] = head
        return heads, unreadable

    def close(self) -> None:
        """Fsync what is written, stop the sync thread and close the file."""
        with self._lock:
            self._sync_locked()
            self._closed = True
            self._dirty.set()  # wakes the sync thread, which sees the file closed
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            syncer, self._syncer = self._syncer, None
        if syncer is not None and syncer is not threading.current_thread():
            syncer.join()


def _parse_head(raw: bytes) -> Head | None:
    parts = raw.decode("ascii", "replace").split()
    if len(parts) != 4 or not parts[0].isdigit() or len(parts[1]) != 64:
        return None
    return Head(int(parts[0]), parts[1], parts[2], parts[3])


# --- the group-commit appender -----------------------------------------------------------


def _chained(items: list[Entry], head: Any) -> list[dict[str, Any]]:
    """The rows of `items` appended after `head` (a (seq, hash) row, or None)."""
    seq, prev = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS)
    rows = []
    for item in items:
        row = item.row(seq, prev)
        rows.append(row)
        seq, prev = seq + 1, row["hash"]
    return rows


def _checkpoint_row(head: Head) -> dict[str, Any]:
    return {
        "seq": head.seq,
        "hash": head.hash,
        "at": clock.now(),
        "key_id": head.key_id,
        "signature": head.signature,
    }


def _elsewhere(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` runs in another thread (so this one may wait for work done there)."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    return loop.is_running() and loop is not running


class GroupAppender:
    """This process's one writer of read records: many entries per transaction.

    Callers hand it entries and wait. Its writer thread takes everything queued (up to
    `max_batch`, after a short window for callers it has just released), takes the chain
    lock, appends the batch, signs the batch's head and commits; its witness thread then
    adds that head to the heads file (fsync) and only then releases the batch's callers,
    while the writer already commits the next batch. Several processes each have one and
    take turns on the chain lock.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        node_key: NodeKey,
        heads: HeadsLog | None = None,
        max_batch: int = 1000,
        max_window: float = 0.002,
    ) -> None:
        self.engine = engine
        self.node_key = node_key
        self.heads = heads
        self.max_batch = max_batch
        self.max_window = max_window
        self.batches = 0
        self._recent: deque[int] = deque([1], maxlen=16)
        self._window = 0.0
        self._cond = threading.Condition()
        self._queue: list[tuple[Entry, Future[int]]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._connection: Connection | None = None
        # Committed batches waiting for their head to reach the heads file.
        self._witness_cond = threading.Condition()
        self._witness_queue: list[tuple[Head, list[Future[int]], int]] = []
        self._witness_thread: threading.Thread | None = None
        self._witness_done = False
        # PostgreSQL: batches are written by asyncpg on event loops (`audit_pg`), one
        # writer per loop; callers on threads go through a loop thread of our own.
        self._dsn = (
            libpq_url(engine.url.render_as_string(hide_password=False))
            if engine.dialect.name == "postgresql"
            else None
        )
        self._writers: dict[asyncio.AbstractEventLoop, LoopWriter] = {}
        self._writers_lock = threading.Lock()
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        self._inbox: list[tuple[Entry, Future[int]]] = []
        self._inbox_lock = threading.Lock()

    def submit(self, entry: Entry) -> Future[int]:
        """Queue `entry`; the future gives its sequence number once its batch is durable."""
        future: Future[int] = Future()
        if self._dsn is not None:
            loop = self._loop_thread()
            with self._inbox_lock:
                self._inbox.append((entry, future))
                if len(self._inbox) == 1:  # the first since the loop last took them
                    loop.call_soon_threadsafe(self._take_inbox, self._writer(loop))
            return future
        with self._cond:
            if self._closed:
                raise RuntimeError("the audit appender is closed")
            self._queue.append((entry, future))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="audit-appender", daemon=True
                )
                self._thread.start()
                self._witness_thread = threading.Thread(
                    target=self._witness, name="audit-witness", daemon=True
                )
                self._witness_thread.start()
            self._cond.notify()
        return future

    def append(self, entry: Entry) -> int:
        """Append `entry` and return its sequence number once its batch has committed."""
        return self.submit(entry).result()

    async def append_async(self, entry: Entry) -> int:
        """`append` for async callers: the event loop keeps serving while the batch commits.

        On PostgreSQL the batch is written on the caller's own loop (no thread hand-off)."""
        if self._dsn is not None:
            return await self._writer(asyncio.get_running_loop()).append(entry)
        return await asyncio.wrap_future(self.submit(entry))

    def _writer(self, loop: asyncio.AbstractEventLoop) -> LoopWriter:
        with self._writers_lock:
            if self._closed:
                raise RuntimeError("the audit appender is closed")
            writer = self._writers.get(loop)
            if writer is None:
                for old in [old for old in self._writers if old.is_closed()]:
                    self._writers.pop(old).terminate()  # a loop that has ended (tests)
                from minyun.core.audit_pg import LoopWriter

                writer = self._writers[loop] = LoopWriter(self, str(self._dsn), loop)
            return writer

    def _loop_thread(self) -> asyncio.AbstractEventLoop:
        """The loop that writes for callers on threads, started on first use."""
        with self._writers_lock:
            if self._own_loop is None:
                loop = asyncio.new_event_loop()
                self._own_thread = threading.Thread(
                    target=loop.run_forever, name="audit-appender", daemon=True
                )
                self._own_thread.start()
                self._own_loop = loop
            return self._own_loop

    def _take_inbox(self, writer: LoopWriter) -> None:
        with self._inbox_lock:
            items, self._inbox = self._inbox, []
        writer.enqueue(list(items))

    def settle(self) -> None:
        """Wait until the writers on other threads' loops have written everything, the
        last batches' checkpoint rows included (tests, and before a verify)."""
        with self._writers_lock:
            writers = list(self._writers.items())
        for loop, writer in writers:
            if _elsewhere(loop):
                asyncio.run_coroutine_threadsafe(writer.drain(), loop).result(timeout=30)

    async def close_loop(self) -> None:
        """Write what this loop's writer has queued and close its connection (a server's
        shutdown, on its loop, before `close`)."""
        with self._writers_lock:
            writer = self._writers.pop(asyncio.get_running_loop(), None)
        if writer is not None:
            await writer.close()

    def close(self) -> None:
        """Write what is queued, then stop the threads and close the connections."""
        self._close_writers()
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._witness_cond:
            self._witness_done = True
            self._witness_cond.notify()
        if self._witness_thread is not None:
            self._witness_thread.join()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _close_writers(self) -> None:
        with self._writers_lock:
            self._closed = True
            writers, self._writers = self._writers, {}
            own, self._own_loop = self._own_loop, None
        for loop, writer in writers.items():
            if _elsewhere(loop):
                # Another thread's loop (ours, or a test's): let it finish its batches there.
                asyncio.run_coroutine_threadsafe(writer.close(), loop).result(timeout=30)
            else:
                writer.terminate()
        if own is not None:
            own.call_soon_threadsafe(own.stop)
            if self._own_thread is not None:
                self._own_thread.join()
            own.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                # The callers just released are still coming back with their next entry:
                # wait a little for as many as recent batches held (group commit's window).
                target = min(max(self._recent), self.max_batch)
                self._cond.wait_for(self._gathered(target), self._window)
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
            started = time.perf_counter()
            # From here a caller can no longer cancel; one who already did (an async request
            # whose client went away) is not told, but its entry is written all the same.
            for _, future in batch:
                future.set_running_or_notify_cancel()
            try:
                first, head = self._write([item for item, _ in batch])
            except BaseException as exc:  # every waiter learns its record is not durable
                log.exception("an audit batch of %d entries failed", len(batch))
                self._drop_connection()
                for _, future in batch:
                    if not future.cancelled():
                        future.set_exception(exc)
                continue
            # The next batch goes to the database while this head goes to the heads file.
            with self._witness_cond:
                self._witness_queue.append((head, [f for _, f in batch], first))
                self._witness_cond.notify()
            self._recent.append(len(batch))
            self._window = min(self.max_window, (time.perf_counter() - started) / 4)

    def _gathered(self, target: int) -> Callable[[], bool]:
        return lambda: len(self._queue) >= target or self._closed

    def _witness(self) -> None:
        while True:
            with self._witness_cond:
                while not self._witness_queue and not self._witness_done:
                    self._witness_cond.wait()
                if not self._witness_queue:
                    return
                done, self._witness_queue = self._witness_queue, []
            error: BaseException | None = None
            if self.heads is not None:
                try:
                    self.heads.append(*(head for head, _, _ in done))
                except BaseException as exc:  # committed, but not witnessed: say so
                    log.exception("writing %d heads to %s failed", len(done), self.heads.path)
                    error = exc
            for _, futures, first in done:
                for offset, future in enumerate(futures):
                    if future.cancelled():
                        continue
                    if error is None:
                        future.set_result(first + offset)
                    else:
                        future.set_exception(error)

    def _write(self, items: list[Entry]) -> tuple[int, Head]:
        rows, head = self._write_sqlalchemy(items)
        self.batches += 1
        return int(rows[0]["seq"]), head

    def _sign(self, rows: list[dict[str, Any]]) -> Head:
        seq, hash_ = int(rows[-1]["seq"]), str(rows[-1]["hash"])
        return Head(
            seq, hash_, self.node_key.kid, self.node_key.sign(_checkpoint_message(seq, hash_))
        )

    def _write_sqlalchemy(self, items: list[Entry]) -> tuple[list[dict[str, Any]], Head]:
        connection = self._connect()
        with connection.begin():
            _lock_chain(connection)
            rows = _chained(items, connection.execute(_HEAD).first())
            connection.execute(insert(AuditRecord), rows)
            head = self._sign(rows)
            connection.execute(insert(AuditCheckpoint), _checkpoint_row(head))
        return rows, head

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = self.engine.connect()
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # a broken connection may refuse even to close
                log.debug("closing the appender's connection failed", exc_info=True)
            self._connection = None


# --- verification ------------------------------------------------------------------------


class Problem(StrEnum):
    ALTERED = "altered"
    REMOVED = "removed"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    REWRITTEN = "rewritten"
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
    heads: int = 0

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


def verify(session: Session, key: NodeKey, heads: HeadsLog | None = None) -> VerifyReport:
    """Walk the chain; report the first altered, removed, inserted, reordered record,
    a record that differs from its head signed outside the database, or a cut tail.

    `heads` defaults to the node's heads file (`session.info["audit_heads"]`).
    """
    log_ = heads if heads is not None else session.info.get("audit_heads")
    witnessed, unreadable = log_.read() if isinstance(log_, HeadsLog) else ({}, [])
    checkpoints = {cp.seq: cp for cp in session.scalars(select(AuditCheckpoint))}
    by_hash: dict[str, int] = {}
    prev_hash, expected_seq, count, last_good = GENESIS, 1, 0, 0
    finding: Finding | None = None
    if unreadable:
        finding = Finding(
            Problem.BAD_CHECKPOINT, 0, f"line {unreadable[0]} of the heads file is not a head"
        )
    for entry in _iter_records(session):
        count += 1
        if finding is not None:
            continue
        finding = _check_entry(entry, expected_seq, prev_hash, by_hash, checkpoints, key)
        finding = finding or _check_witness(entry, witnessed.get(entry.seq), last_good, key)
        if entry.seq in witnessed and finding is None:
            last_good = entry.seq
        by_hash[entry.hash] = entry.seq
        prev_hash, expected_seq = entry.hash, entry.seq + 1
    if finding is None:
        finding = _check_beyond(checkpoints, witnessed, expected_seq - 1, key)
    return VerifyReport(
        records=count, checkpoints=len(checkpoints), first_problem=finding, heads=len(witnessed)
    )


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


def _check_witness(
    entry: AuditRecord, head: Head | None, last_good: int, key: NodeKey
) -> Finding | None:
    # A head that matches vouches for every record before it (the chain links them), so
    # only a mismatch needs its signature checked.
    if head is None or head.hash == entry.hash:
        return None
    if not head.valid(key):
        return Finding(Problem.BAD_CHECKPOINT, entry.seq, "the heads file has a forged line")
    return Finding(
        Problem.REWRITTEN,
        entry.seq,
        f"records {last_good + 1}..{entry.seq} differ from the head signed outside the database",
    )


def _check_beyond(
    checkpoints: dict[int, AuditCheckpoint], witnessed: dict[int, Head], last_seq: int, key: NodeKey
) -> Finding | None:
    signed = [
        Head(cp.seq, cp.hash, cp.key_id, cp.signature)
        for cp in checkpoints.values()
        if cp.seq > last_seq
    ] + [head for head in witnessed.values() if head.seq > last_seq]
    valid = [head for head in signed if head.valid(key)]
    if valid:
        head = max(valid, key=lambda h: h.seq)
        return Finding(
            Problem.TRUNCATED,
            last_seq + 1,
            f"a signed head covers record {head.seq} but the chain ends at {last_seq}",
        )
    if signed:
        return Finding(Problem.BAD_CHECKPOINT, signed[0].seq, "checkpoint signature is not valid")
    return None
