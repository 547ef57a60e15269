"""The group-commit appender's PostgreSQL writer: asyncpg, on an event loop.

`audit.GroupAppender` hands PostgreSQL batches to one `LoopWriter` per event loop: the
request's own loop for async callers (the key lookup), and a small loop thread of the
appender's own for callers on threads. Everything a batch needs happens on that loop,
so no batch waits for the GIL to come back from a busy request loop (decision 0007):

1. take what is queued (after a short window for callers just released);
2. one statement, its own transaction: `minyun_audit_append_docs` (migration 0023) takes
   the chain lock, reads the head with a snapshot taken after the lock is held, chains the
   records after it and inserts them. Each record travels as its canonical JSON only
   (`Entry.parts`, around the `prev_hash` and `seq` only this step knows): the hash is the
   same SHA-256 of the same canonical JSON as everywhere else, and the columns stored are
   read back from the text that was hashed. However many processes share the chain, no
   batch conflicts and none needs a second round trip;
3. sign the head it returns, add it to the heads file (one write, fsync) and only then
   release the batch's callers with their sequence numbers. The signed head's checkpoint
   row goes with the next batch's statement, or alone when the writer has nothing else to
   do (the heads file, which callers wait for, has it at once).

The invariants are those of decision 0005: a caller returns only once its record is
committed and its batch's head is on disk; a batch that fails raises in every caller; an
entry whose caller gave up is written all the same (the read may have happened).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from minyun.core import clock
from minyun.core.audit import _PG_LOCK_KEY, Entry, Head, _checkpoint_message

if TYPE_CHECKING:
    from minyun.core.audit import GroupAppender

log = logging.getLogger(__name__)

# How a caller waits: an asyncio future (callers on the loop) or a concurrent one (threads).
Waiter = asyncio.Future[int] | concurrent.futures.Future[int]

# One batch, one round trip: the server-side step of migration 0012 takes the chain lock,
# reads the head (a fresh snapshot, after the lock), chains and inserts the records, and
# inserts the signed checkpoint of an earlier batch of this writer if one is waiting.
_APPEND = (
    "SELECT first_seq, last_seq, last_hash FROM minyun_audit_append_docs("
    + ", ".join(f"${i}" for i in range(1, 9))
    + ")"
)
_CHECKPOINT = (
    "INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING"
)
_NO_CHECKPOINT = (None, None, None, None, None)
# How long a quiet writer keeps the last head's checkpoint row for the next batch.
IDLE_SECONDS = 0.05
# The gathering window, as a share of the last batch's time (at most `max_window`).
WINDOW_SHARE = 0.25


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
        # The last batch's signed head, in the heads file but not yet a checkpoint row: it
        # goes with the next batch, or alone when the writer goes quiet.
        self._unsaved: Head | None = None
        self._woken: asyncio.Future[None] | None = None

    async def append(self, entry: Entry) -> int:
        """Queue `entry` and wait until its record is durable; its sequence number."""
        future: asyncio.Future[int] = self.loop.create_future()
        self.enqueue([(entry, future)])
        # A caller that gives up (its client went away) cancels only its own future: the
        # entry stays queued and is written all the same.
        return await future

    def enqueue(self, items: list[tuple[Entry, Waiter]]) -> None:
        """Queue entries with what to tell their callers (on this writer's loop)."""
        self._queue.extend(items)
        woken = self._woken
        if woken is not None and not woken.done():
            woken.set_result(None)
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
        while self._queue or self._unsaved is not None:
            if not self._queue:
                await self._idle()
                continue
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
            self._window = min(
                self.owner.max_window, (time.perf_counter() - started) * WINDOW_SHARE
            )

    async def _idle(self) -> None:
        """Nothing queued: the last head's checkpoint row waits a little for the next
        batch to carry it (one commit fewer), and is written alone if none comes."""
        self._woken = self.loop.create_future()
        try:
            await asyncio.wait_for(self._woken, IDLE_SECONDS)
        except TimeoutError:
            await self._save_unsaved()
        finally:
            self._woken = None

    async def _save_unsaved(self) -> None:
        """The last batch's checkpoint row, on its own (the writer has nothing else to do)."""
        head, self._unsaved = self._unsaved, None
        if head is None:
            return
        try:
            connection = await self._connect()
            await connection.execute(_CHECKPOINT, *_checkpoint(head))
        except Exception:  # the heads file holds the head; the row is its second copy
            log.exception("the checkpoint row of audit head %d was not written", head.seq)
            self.terminate()

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
        """Append `items` in one round trip; their first sequence number and signed head."""
        connection = await self._connect()
        waiting = _checkpoint(self._unsaved) if self._unsaved is not None else _NO_CHECKPOINT
        found = await connection.fetchrow(_APPEND, _PG_LOCK_KEY, *_arrays(items), *waiting)
        first, seq, hash_ = int(found[0]), int(found[1]), str(found[2])
        key = self.owner.node_key
        head = Head(seq, hash_, key.kid, key.sign(_checkpoint_message(seq, hash_)))
        self._unsaved = head
        return first, head


def _arrays(items: list[Entry]) -> tuple[list[str], list[str]]:
    """The batch as `minyun_audit_append_docs` takes it: each record's canonical JSON
    before `prev_hash`, and between `prev_hash` and `seq`."""
    before: list[str] = []
    between: list[str] = []
    for entry in items:
        head, middle = entry.parts()
        before.append(head)
        between.append(middle)
    return before, between


def _checkpoint(head: Head) -> tuple[Any, ...]:
    return (head.seq, head.hash, clock.now(), head.key_id, head.signature)
