"""Group-committed audit: durable before return, one chain across threads and processes,
and the heads file outside the database catching a rewritten or truncated tail."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from minyun.core import audit, context
from minyun.core.audit import AuditCheckpoint, AuditRecord, Entry, Problem
from minyun.core.platform import Platform
from minyun.core.security import Principal
from tests.core.test_audit import drop_sqlite_append_only

READER = Principal(kind="user", name="reader", roles=frozenset({"auditor"}))
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def node(request: pytest.FixtureRequest) -> Platform:
    fixture = "platform" if request.param == "sqlite" else "pg_platform"
    platform: Platform = request.getfixturevalue(fixture)
    return platform


def _records(node: Platform) -> list[AuditRecord]:
    with node.factory() as s:
        return list(s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


def _verify(node: Platform) -> audit.VerifyReport:
    with node.factory() as s:
        return audit.verify(s, node.node_key)


@pytest.mark.postgres
def test_record_read_returns_once_its_record_is_committed(pg_platform: Platform) -> None:
    token = context.request_id.set("req-durable-1")
    try:
        with pg_platform.factory() as s:
            seq = audit.record_read(s, READER, "rows.read", target="r1", keys=["a", "b"])
            # Still inside the reader's open transaction, another connection already sees it.
            with pg_platform.factory() as other:
                stored = other.get(AuditRecord, seq)
            assert stored is not None
            assert (stored.request_id, stored.record_count) == ("req-durable-1", 2)
            s.rollback()  # the read's own transaction has no say over its record
    finally:
        context.request_id.reset(token)
    assert pg_platform.audit_appender.batches == 1
    # The head is in the heads file at once; its checkpoint row follows when it is quiet.
    assert _verify(pg_platform).heads == 1
    pg_platform.audit_appender.settle()
    report = _verify(pg_platform)
    assert report.ok and report.records == 1 and report.heads == 1 and report.checkpoints == 1


def test_record_read_after_a_change_joins_the_change_transaction(node: Platform) -> None:
    # The transaction holds the chain lock: handing off to the appender would wait forever.
    with node.factory.begin() as s:
        audit.record(s, READER, "resource.update", target="r1")
        seq = audit.record_read(s, READER, "rows.read", target="r1")
        assert seq == 2
    assert node.audit_appender.batches == 0
    assert [r.action for r in _records(node)] == ["resource.update", "rows.read"]
    assert _verify(node).ok


def test_sqlite_reads_are_recorded_in_the_request_transaction(platform: Platform) -> None:
    # Every SQLite transaction holds the one write lock from BEGIN IMMEDIATE.
    with pytest.raises(RuntimeError), platform.factory.begin() as s:
        audit.record_read(s, READER, "rows.read", target="r1")
        raise RuntimeError("the response never left")
    assert _records(platform) == [] and platform.audit_appender.batches == 0


def test_async_callers_wait_for_durability_without_blocking_the_loop(node: Platform) -> None:
    async def many() -> list[int]:
        entries = [Entry.of(READER, "rows.lookup", target=f"k{i}") for i in range(20)]
        return await asyncio.gather(*(node.audit_appender.append_async(e) for e in entries))

    seqs = asyncio.run(many())
    assert sorted(seqs) == list(range(1, 21))
    assert node.audit_appender.batches < 20  # grouped
    assert _verify(node).ok


def test_a_caller_that_gave_up_still_gets_its_record_and_others_are_served(
    node: Platform,
) -> None:
    appender = node.audit_appender
    with appender._cond:  # hold the queue so both wait in it (the lock is reentrant)
        gave_up = appender.submit(Entry.of(READER, "rows.read", target="gone"))
        waiting = appender.submit(Entry.of(READER, "rows.read", target="here"))
        assert gave_up.cancel()
    assert waiting.result() == 2
    assert appender.append(Entry.of(READER, "rows.read", target="after")) == 3
    assert [r.object_id for r in _records(node)] == ["gone", "here", "after"]


def test_entries_keep_the_request_context_of_their_caller(node: Platform) -> None:
    token = context.request_id.set("req-ctx-42")
    ip = context.client_ip.set("10.0.0.9")
    try:
        entry = Entry.of(READER, "rows.read")
    finally:
        context.request_id.reset(token)
        context.client_ip.reset(ip)
    node.audit_appender.append(entry)  # written by the appender's thread, outside the context
    [stored] = _records(node)
    assert (stored.request_id, stored.client_ip) == ("req-ctx-42", "10.0.0.9")


def test_concurrent_readers_and_changers_make_one_signed_chain(node: Platform) -> None:
    errors: list[BaseException] = []

    def reader(n: int) -> None:
        try:
            for i in range(20):
                node.audit_appender.append(Entry.of(READER, "rows.read", target=f"{n}.{i}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def changer(n: int) -> None:
        try:
            for i in range(10):
                with node.factory.begin() as s:
                    audit.record(s, READER, "resource.update", target=f"{n}.{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=changer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    node.audit_appender.settle()  # the last batch's checkpoint row goes in when it is quiet
    report = _verify(node)
    assert report.ok, report.first_problem
    assert report.records == 6 * 20 + 2 * 10
    # Every read batch and every change transaction signed its head, in the file too.
    assert report.heads == report.checkpoints == node.audit_appender.batches + 20


_OTHER_PROCESS = """
import sys, threading
from pathlib import Path
from minyun.core.audit import Entry
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal

node = Platform.open(load_settings(var_dir=Path(sys.argv[1]), database_url=sys.argv[2]))
who = Principal(kind="user", name="other-process")

def work(n):
    for i in range(25):
        node.audit_appender.append(Entry.of(who, "rows.read", target=f"{n}.{i}"))

threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
node.close()
"""


@pytest.mark.postgres
def test_a_batch_after_the_chain_moved_on_reads_the_new_head(node: Platform) -> None:
    """A record appended by a change between two batches: the next batch is chained after it
    (on PostgreSQL the batch's server-side step reads the head under the lock)."""
    appender = node.audit_appender
    first = appender.append(Entry.of(READER, "rows.read", target="a"))
    with node.factory.begin() as s:
        changed = audit.record(s, READER, "resource.update", target="b").seq
    after = appender.append(Entry.of(READER, "rows.read", target="c"))
    again = appender.append(Entry.of(READER, "rows.read", target="d"))
    assert (changed, after, again) == (first + 1, first + 2, first + 3)
    with node.factory() as s:
        assert audit.verify(s, node.node_key).ok
    with node.factory.begin() as s:
        audit.record(s, READER, "resource.update", target="e")
    last = appender.append(Entry.of(READER, "rows.read", target="f"))
    assert last == first + 5


def test_two_processes_append_to_one_chain(pg_platform: Platform) -> None:
    settings = pg_platform.settings
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS, str(settings.var_dir), settings.database_url]
    )
    try:
        for i in range(100):
            pg_platform.audit_appender.append(Entry.of(READER, "rows.read", target=str(i)))
    finally:
        assert other.wait(timeout=300) == 0
    report = _verify(pg_platform)
    assert report.ok, report.first_problem
    actors = {r.actor for r in _records(pg_platform)}
    assert report.records == 200 and actors == {READER.label, "user:other-process"}


# --- the attacker: a database superuser, without the node's key ---------------------------


def _fill(node: Platform, n: int, per_batch: int = 10) -> None:
    for start in range(0, n, per_batch):
        futures = [
            node.audit_appender.submit(Entry.of(READER, "rows.read", target=str(i)))
            for i in range(start, min(n, start + per_batch))
        ]
        for f in futures:
            f.result()
    # The writer signs the last head's checkpoint row when it falls idle (IDLE_SECONDS) or
    # with the next batch: wait for it, so that an attack below acts on a settled chain and
    # not on a row still on its way (which would sign the original hash after the rewrite).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with node.factory() as s:
            newest = s.scalar(select(func.max(AuditRecord.seq)))
            signed = s.scalar(select(func.max(AuditCheckpoint.seq)))
        if newest is None or signed == newest:
            return
        time.sleep(0.02)
    raise AssertionError(f"the checkpoint of audit record {newest} was never written")


def _attacker(node: Platform) -> Session:
    if node.engine.dialect.name == "postgresql":
        with node.factory.begin() as s:
            for table in ("audit_records", "audit_checkpoints"):
                s.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
    else:
        with node.factory.begin() as s:
            drop_sqlite_append_only(s)
    return node.factory()


def test_rewriting_a_recent_record_and_the_chain_after_it_is_caught(node: Platform) -> None:
    _fill(node, 498)
    assert _verify(node).ok
    with _attacker(node) as s, s.begin():
        # Rewrite record 450, recompute every hash after it, drop the signatures it breaks.
        prev = s.get(AuditRecord, 449)
        assert prev is not None
        prev_hash = prev.hash
        for entry in s.scalars(select(AuditRecord).where(AuditRecord.seq >= 450)):
            if entry.seq == 450:
                entry.purpose = "nothing to see"
            entry.prev_hash = prev_hash
            entry.hash = prev_hash = audit.record_hash(entry)
        s.execute(text("DELETE FROM audit_checkpoints WHERE seq >= 450"))
    with node.factory() as s:
        # What the database alone says: intact. The heads file says otherwise.
        assert audit.verify(s, node.node_key, heads=_no_heads(node)).ok
        finding = audit.verify(s, node.node_key).first_problem
    assert finding is not None and finding.problem == Problem.REWRITTEN
    assert 450 <= finding.seq <= 460  # the first batch head at or after the rewrite


def test_deleting_the_newest_records_is_caught(node: Platform) -> None:
    _fill(node, 498)
    with _attacker(node) as s, s.begin():
        s.execute(text("DELETE FROM audit_records WHERE seq >= 401"))
        s.execute(text("DELETE FROM audit_checkpoints WHERE seq >= 401"))
    with node.factory() as s:
        assert audit.verify(s, node.node_key, heads=_no_heads(node)).ok
        finding = audit.verify(s, node.node_key).first_problem
    assert finding is not None and (finding.problem, finding.seq) == (Problem.TRUNCATED, 401)
    assert "498" in finding.detail


def test_a_forged_line_in_the_heads_file_is_reported(node: Platform) -> None:
    _fill(node, 5, per_batch=5)
    with node.audit_heads.path.open("a") as f:
        f.write(f"9 {'ab' * 32} {node.node_key.kid} AAAA\n")
    finding = _verify(node).first_problem
    assert finding is not None and finding.problem == Problem.BAD_CHECKPOINT


def test_a_line_cut_short_by_a_crash_is_not_tampering(node: Platform) -> None:
    _fill(node, 5, per_batch=5)
    with node.audit_heads.path.open("a") as f:
        f.write("6 0123")
    assert _verify(node).ok


def _no_heads(node: Platform) -> audit.HeadsLog:
    return audit.HeadsLog(Path(node.settings.var_dir) / "no-such-heads.log")


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@given(
    actor=_TEXT, action=_TEXT, detail=st.none() | _TEXT, purpose=st.none() | _TEXT,
    keys=st.none() | st.lists(_TEXT, max_size=3), count=st.none() | st.integers(0, 10**12),
    seq=st.integers(1, 10**15), prev=st.text("0123456789abcdef", min_size=64, max_size=64),
)  # fmt: skip
def test_the_parts_around_prev_hash_and_seq_are_the_canonical_json(
    actor: str, action: str, detail: str | None, purpose: str | None,
    keys: list[str] | None, count: int | None, seq: int, prev: str,
) -> None:  # fmt: skip
    """PostgreSQL's batch step hashes `before ‖ prev_hash ‖ between ‖ seq ‖ }`: the same
    text, byte for byte, as the record's canonical JSON (Chinese, quotes, controls)."""
    entry = Entry(
        actor=actor, action=action, detail=detail, purpose=purpose, record_keys=keys,
        record_count=count, object_id="对象\"1", request_id=None, client_ip="10.0.0.1",
    )  # fmt: skip
    before, between = entry.parts()
    row = entry.row(seq, prev)
    text = before + prev + between + str(seq) + "}"
    assert hashlib.sha256(text.encode()).hexdigest() == row["hash"]


def test_a_value_that_looks_like_the_prev_hash_key_stays_a_value() -> None:
    """`parts` cuts the canonical text at the `prev_hash` key: a value spelling that key
    out (placeholder included) is escaped by the encoder and never mistaken for it."""
    lookalike = '"prev_hash":"' + "~" * 64 + '"'
    entry = Entry(actor="a", action="b", detail=lookalike, purpose=lookalike, request_id=None)
    before, between = entry.parts()
    row = entry.row(7, "f" * 64)
    text = before + "f" * 64 + between + "7}"
    assert hashlib.sha256(text.encode()).hexdigest() == row["hash"]


def test_stored_columns_are_the_entry_as_hashed(node: Platform) -> None:
    """PostgreSQL stores the columns it reads back from the hashed text: awkward text
    (Chinese, quotes, backslashes, newlines, emoji), empty and missing values arrive
    exactly as given, and the chain verifies."""
    awkward = '身份证 "引号" \\反斜杠\\ \n换行\t制表 🙂 ~' + "~" * 64
    entries = [
        Entry(
            actor="user:林建华",
            action="rows.read",
            on_behalf_of="client:甲",
            object_type="resource",
            object_id=awkward,
            record_keys=["350102", awkward, ""],
            record_count=10**12,
            purpose=awkward,
            detail="",
            request_id="r-1",
            client_ip="2001:db8::1",
        ),
        Entry(actor="system", action="job.run", request_id=None, client_ip=None),
    ]
    seqs = [f.result() for f in [node.audit_appender.submit(e) for e in entries]]
    stored = {r.seq: r for r in _records(node)}
    for seq, entry in zip(seqs, entries, strict=True):
        record = stored[seq]
        for name in ("actor", "action", "on_behalf_of", "object_type", "object_id",
                     "record_keys", "record_count", "purpose", "outcome", "detail",
                     "request_id", "client_ip", "at"):  # fmt: skip
            assert getattr(record, name) == getattr(entry, name), name
        assert record.hash == audit.record_hash(record)
    assert _verify(node).ok


def test_heads_reach_the_file_at_once_and_the_disk_soon(tmp_path: Path) -> None:
    """A head is in the file as soon as `append` returns (another reader sees it; a killed
    process loses nothing), the sync thread fsyncs it, and `close` leaves nothing unsynced."""
    heads = audit.HeadsLog(tmp_path / "heads.log", sync_seconds=0.001)
    heads.append(audit.Head(1, "a" * 64, "k1", "sig"))
    found, unreadable = audit.HeadsLog(tmp_path / "heads.log").read()
    assert list(found) == [1] and not unreadable
    for _ in range(500):
        if heads.syncs:
            break
        threading.Event().wait(0.01)
    assert heads.syncs >= 1
    heads.append(audit.Head(2, "b" * 64, "k1", "sig"))
    heads.close()
    assert not [t for t in threading.enumerate() if t.name == "audit-heads-sync"]
    heads.append(audit.Head(3, "c" * 64, "k1", "sig"))  # opened again after close
    heads.close()
    assert sorted(audit.HeadsLog(tmp_path / "heads.log").read()[0]) == [1, 2, 3]
