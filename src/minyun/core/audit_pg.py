"""The group-commit appender's PostgreSQL writer: asyncpg, on an event loop.

`audit.GroupAppender` hands PostgreSQL batches to one `LoopWriter` per event loop: the
request's own loop for async callers (the key lookup), and a small loop thread of the
appender's own for callers on threads. Everything a batch needs happens on that loop,
so no batch waits for the GIL to come back from a busy request loop (decision 0007):

1. take what is queued (after a short window for callers just released), chain it after
   the head this writer committed last, sign the batch's head;
2. one transaction: the chain lock, the records and the signed checkpoint in one
   statement (`unnest` over arrays), COMMIT. If another writer (another process, or
   another loop of this one) extended the chain meanwhile, the first `seq` is taken: the
   unique violation rolls the batch back, and it goes again after reading the head under
   the lock, as every batch does for `SHARED_CHAIN_SECONDS` after such a conflict;
3. the head goes to the heads file (one write, fsync) and only then are the batch's
   callers released with their sequence numbers.

The invariants are those of decision 0005: a caller returns only once its record is
committed and its batch's head is on disk; a batch that fails raises in every caller; an
entry whose caller gave up is written all the same (the read may have happened).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from minyun.core import clock
from minyun.core.audit import _PG_LOCK_KEY, SHARED_CHAIN_SECONDS, Entry, Head, _chained

if TYPE_CHECKING:
    from minyun.core.audit import GroupAppender

log = logging.getLogger(__name__)

# How a caller waits: an asyncio future (callers on the loop) or a concurrent one (threads).
Waiter = asyncio.Future[int] | concurrent.futures.Future[int]

# The columns of audit_records in insert order, with their array types for `unnest`.
_COLUMNS = (
    ("seq", "bigint"), ("at", "timestamptz"), ("actor", "text"), ("on_behalf_of", "text"),
    ("action", "text"), ("object_type", "text"), ("object_id", "text"),
    ("record_keys", "text"), ("record_count", "bigint"), ("purpose", "text"),
    ("outcome", "text"), ("detail", "text"), ("request_id", "text"), ("client_ip", "text"),
    ("prev_hash", "text"), ("hash", "text"),
)  # fmt: skip
_N = len(_COLUMNS)
# The batch and its signed checkpoint in one statement, under the chain lock: every row
# it inserts is joined with the lock's one row, so none is written before the lock is held.
# Alone it is its own transaction (the lock goes with its commit); the lock is re-entrant
# inside a transaction that already holds it.
_INSERT = (
    f"WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})),"
    " records AS (INSERT INTO audit_records ("
    + ", ".join(name for name, _ in _COLUMNS)
    + ") SELECT "
    + ", ".join(
        "u.record_keys::json" if name == "record_keys" else f"u.{name}" for name, _ in _COLUMNS
    )
    + " FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(_COLUMNS, start=1))
    + ") AS u("
    + ", ".join(name for name, _ in _COLUMNS)
    + ") CROSS JOIN lock) INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature)"
    " SELECT " + ", ".join(f"${i}" for i in range(_N + 1, _N + 6)) + " FROM lock"
)
# A transaction holding the lock (one round trip, the simple protocol: the key is ours).
_BEGIN_LOCKED = f"BEGIN; SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"
_HEAD = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"


class LoopWriter:
    """The PostgreSQL batches of one event loop (one asyncpg connection, made on first use)."""

    def __init__(self, owner: GroupAppender, dsn: str, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.dsn = dsn
        self.loop = loop
        self._queue: list[tuple[Entry, Waiter]] = []
        self._task: asyncio.Task[None] | None = None
        self._enough: asyncio.Future[None] | None = None
        self._target = 1
        self._recent: deque[int] = deque([1], maxlen=16)
        self._window = 0.0
        self._connection: Any = None
        # (seq, hash) of the head this writer committed last (None: read it under the lock).
        self._last: tuple[int, str] | None = None
        self._shared_until = 0.0

    async def append(self, entry: Entry) -> int:
        """Queue `entry` and wait until its record is durable; its sequence number."""
        future: asyncio.Future[int] = self.loop.create_future()
        self.enqueue([(entry, future)])
        # A caller that gives up (its client went away) leaves the entry to be written.
        return await asyncio.shield(future)

    def enqueue(self, items: list[tuple[Entry, Waiter]]) -> None:
        """Queue entries with what to tell their callers (on this writer's loop)."""
        self._queue.extend(items)
        enough = self._enough
        if enough is not None and not enough.done() and len(self._queue) >= self._target:
            enough.set_result(None)
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run(), name="audit-writer")

    async def drain(self) -> None:
        """Wait until everything queued so far has been written (or has failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Write what is queued, then close the connection."""
        await self.drain()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    def terminate(self) -> None:
        """Drop the connection (the loop may be gone already)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a closed loop refuses even this
                connection.terminate()

    async def _run(self) -> None:
        # Runs while there is work: a loop that goes quiet keeps no task pending.
        while self._queue:
            await self._gather()
            batch = self._queue[: self.owner.max_batch]
            del self._queue[: self.owner.max_batch]
            started = time.perf_counter()
            futures = [future for _, future in batch]
            try:
                first, head = await self._write([entry for entry, _ in batch])
                if self.owner.heads is not None:
                    self.owner.heads.append(head)
            except BaseException as exc:  # every waiter learns its record is not durable
                log.exception("an audit batch of %d entries failed", len(batch))
                self._last = None
                self.terminate()
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.owner.batches += 1
            for offset, future in enumerate(futures):
                if not future.done():
                    future.set_result(first + offset)
            self._recent.append(len(batch))
            self._window = min(self.owner.max_window, (time.perf_counter() - started) / 4)

    async def _gather(self) -> None:
        """Group commit's window: the callers just released are on their way back with
        their next entry; wait a little for as many as recent batches held."""
        await asyncio.sleep(0)
        self._target = min(max(self._recent), self.owner.max_batch)
        if len(self._queue) >= self._target or self._window <= 0:
            return
        self._enough = self.loop.create_future()
        try:
            await asyncio.wait_for(self._enough, self._window)
        except TimeoutError:
            pass
        finally:
            self._enough = None

    async def _connect(self) -> Any:
        if self._connection is None or self._connection.is_closed():
            import asyncpg

            self._connection = await asyncpg.connect(self.dsn, statement_cache_size=16)
        return self._connection

    async def _write(self, items: list[Entry]) -> tuple[int, Head]:
        import asyncpg

        connection = await self._connect()
        optimistic = self._last is not None and time.monotonic() >= self._shared_until
        try:
            if optimistic:
                # Chained after the head we committed last: one statement, one round trip.
                rows, head = self._chained(items, self._last)
                await connection.execute(_INSERT, *_arrays(rows), *_checkpoint(head))
            else:
                # The head read under the lock (its snapshot taken after the lock is held).
                await connection.execute(_BEGIN_LOCKED)
                try:
                    rows, head = self._chained(items, await connection.fetchrow(_HEAD))
                    await connection.execute(_INSERT, *_arrays(rows), *_checkpoint(head))
                except BaseException:
                    if not connection.is_closed():
                        await connection.execute("ROLLBACK")
                    raise
                await connection.execute("COMMIT")
        except asyncpg.UniqueViolationError:
            if not optimistic:
                raise
            # The chain moved on without us (another writer): read its head from now on.
            self._last = None
            self._shared_until = time.monotonic() + SHARED_CHAIN_SECONDS
            return await self._write(items)
        except BaseException:
            self._last = None
            raise
        self._last = (head.seq, head.hash)
        return int(rows[0]["seq"]), head

    def _chained(self, items: list[Entry], known: Any) -> tuple[list[dict[str, Any]], Head]:
        rows = _chained(items, tuple(known) if known is not None else None)
        return rows, self.owner._sign(rows)


def _arrays(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """The batch as one array per column (record keys as JSON text)."""
    arrays: list[list[Any]] = [[] for _ in _COLUMNS]
    for row in rows:
        for array, (name, _) in zip(arrays, _COLUMNS, strict=True):
            value = row[name]
            if name == "record_keys" and value is not None:
                value = json.dumps(value, ensure_ascii=False)
            array.append(value)
    return arrays


def _checkpoint(head: Head) -> tuple[Any, ...]:
    return (head.seq, head.hash, clock.now(), head.key_id, head.signature)
