"""The audit chain: appends, verification, and every kind of tampering caught."""

from __future__ import annotations

import itertools
import threading

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from minyun.core import audit
from minyun.core.audit import AuditCheckpoint, AuditRecord, Problem
from minyun.core.keys import NodeKey
from minyun.core.platform import Platform
from minyun.core.security import Principal

ALICE = Principal(kind="user", name="alice", roles=frozenset({"steward"}))


def _append(session: Session, n: int, key: NodeKey | None = None) -> list[AuditRecord]:
    return [
        audit.record(
            session,
            ALICE,
            "test.read",
            target=f"r{i}",
            keys=[f"k{i}"],
            purpose="tests",
            node_key=key,
        )
        for i in range(n)
    ]


def _allow_tampering(session: Session) -> None:
    # The attacker here is a database superuser (or, on SQLite, whoever can write the file)
    # who switches the append-only triggers off.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        drop_sqlite_append_only(session)


def drop_sqlite_append_only(session: Session) -> None:
    """Drop the SQLite append-only triggers (migration 0009), as an attacker with the file."""
    for table in ("audit_records", "audit_checkpoints"):
        for operation in ("update", "delete"):
            session.execute(text(f"DROP TRIGGER IF EXISTS {table}_append_only_{operation}"))


def test_untouched_chain_verifies(session: Session, node_key: NodeKey) -> None:
    records = _append(session, 5)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    report = audit.verify(session, node_key)
    assert report.ok and report.records == 5


def test_changed_record_is_detected(session: Session, node_key: NodeKey) -> None:
    _append(session, 6)
    _allow_tampering(session)
    session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(actor="user:mallory"))
    session.expire_all()
    finding = audit.verify(session, node_key).first_problem
    assert finding is not None and (finding.problem, finding.seq) == (Problem.ALTERED, 3)


def test_changed_record_with_recomputed_hash_breaks_the_next_link(
    session: Session, node_key: NodeKey
) -> None:
    records = _append(session, 4)
    _allow_tampering(session)
    forged = records[1]
    forged.purpose = "nothing to see"
    new_hash = audit.record_hash(forged)
    session.execute(
        update(AuditRecord)
        .where(AuditRecord.seq == 2)
        .values(purpose="nothing to see", hash=new_hash)
    )
    session.expire_all()
    finding = audit.verify(session, node_key).first_problem
    assert finding is not None and finding.seq == 3


def test_deleted_record_is_detected(session: Session, node_key: NodeKey) -> None:
    _append(session, 6)
    _allow_tampering(session)
    session.execute(text("DELETE FROM audit_records WHERE seq = 4"))
    session.expire_all()
    finding = audit.verify(session, node_key).first_problem
    assert finding is not None and (finding.problem, finding.seq) == (Problem.REMOVED, 4)


def test_inserted_record_is_detected(session: Session, node_key: NodeKey) -> None:
    _append(session, 4)
    _allow_tampering(session)
    # Make room after record 2 and put a well-formed record there.
    for seq in (4, 3):
        session.execute(update(AuditRecord).where(AuditRecord.seq == seq).values(seq=seq + 1))
    second = session.get(AuditRecord, 2)
    assert second is not None
    fake = AuditRecord(
        seq=3, at=second.at, actor="user:mallory", on_behalf_of=None, action="test.read",
        object_type=None, object_id="r9", record_keys=None, record_count=None, purpose=None,
        outcome="success", detail=None, request_id=None, client_ip=None, prev_hash=second.hash,
    )  # fmt: skip
    fake.hash = audit.record_hash(fake)
    session.add(fake)
    session.flush()
    session.expire_all()
    finding = audit.verify(session, node_key).first_problem
    assert finding is not None
    # The fake links to record 2 correctly; the record after it does not link to the fake.
    assert (finding.problem, finding.seq) in {(Problem.INSERTED, 4), (Problem.ALTERED, 4)}


def test_reordered_records_are_detected(session: Session, node_key: NodeKey) -> None:
    _append(session, 5)
    _allow_tampering(session)
    session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(seq=-2))
    session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(seq=2))
    session.execute(update(AuditRecord).where(AuditRecord.seq == -2).values(seq=3))
    session.expire_all()
    finding = audit.verify(session, node_key).first_problem
    assert finding is not None and finding.seq == 2
    assert finding.problem in {Problem.ALTERED, Problem.REORDERED}


def test_truncated_tail_is_caught_by_the_signed_checkpoint(
    session: Session, node_key: NodeKey
) -> None:
    _append(session, 3, node_key)
    assert audit.checkpoint(session, node_key) is not None
    _append(session, 2, node_key)
    _allow_tampering(session)
    session.execute(text("DELETE FROM audit_records WHERE seq >= 3"))
    session.expire_all()
    finding = audit.verify(session, node_key).first_problem
    assert finding is not None and finding.problem == Problem.TRUNCATED


def test_forged_checkpoint_signature_is_detected(session: Session, node_key: NodeKey) -> None:
    _append(session, 2, node_key)
    audit.checkpoint(session, node_key)
    _allow_tampering(session)
    session.execute(text("UPDATE audit_checkpoints SET signature = 'AAAA' WHERE seq = 2"))
    session.expire_all()
    finding = audit.verify(session, node_key).first_problem
    assert finding is not None and finding.problem == Problem.BAD_CHECKPOINT


def test_each_commit_signs_its_head_in_the_database_and_the_heads_file(
    platform: Platform,
) -> None:
    with platform.factory.begin() as s:
        _append(s, 3)
    with platform.factory.begin() as s:
        _append(s, 2)
    with platform.factory() as s:
        report = audit.verify(s, platform.node_key)
        signed = list(s.scalars(select(AuditCheckpoint.seq).order_by(AuditCheckpoint.seq)))
    assert report.ok and report.records == 5 and report.heads == 2
    assert signed == [3, 5]
    lines = platform.audit_heads.path.read_text().splitlines()
    assert [int(line.split()[0]) for line in lines] == [3, 5]


def test_a_rolled_back_transaction_signs_nothing(platform: Platform) -> None:
    with pytest.raises(RuntimeError), platform.factory.begin() as s:
        _append(s, 2)
        raise RuntimeError("the change fails")
    with platform.factory() as s:
        assert audit.verify(s, platform.node_key).records == 0
    assert not platform.audit_heads.path.exists()


def test_sqlite_refuses_update_and_delete(platform: Platform) -> None:
    with platform.factory.begin() as s:
        _append(s, 2)
    for statement in (
        "UPDATE audit_records SET actor = 'x'",
        "DELETE FROM audit_records WHERE seq = 2",
        "DELETE FROM audit_records",
        "UPDATE audit_checkpoints SET signature = 'AAAA'",
        "DELETE FROM audit_checkpoints",
    ):
        with pytest.raises(DBAPIError, match="append-only"), platform.factory.begin() as s:
            s.execute(text(statement))
    with platform.factory() as s:
        assert audit.verify(s, platform.node_key).records == 2
        assert s.scalar(text("SELECT count(*) FROM audit_checkpoints"))


@pytest.mark.postgres
def test_postgres_refuses_update_and_delete(pg_platform: Platform) -> None:
    with pg_platform.factory.begin() as s:
        _append(s, 2)
    for statement in ("UPDATE audit_records SET actor = 'x'", "DELETE FROM audit_records"):
        with pytest.raises(DBAPIError, match="append-only"), pg_platform.factory.begin() as s:
            s.execute(text(statement))
    with pg_platform.factory() as s:
        assert audit.verify(s, pg_platform.node_key).records == 2


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_eight_concurrent_writers_make_one_chain(
    backend: str, request: pytest.FixtureRequest
) -> None:
    node: Platform = request.getfixturevalue("platform" if backend == "sqlite" else "pg_platform")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                with node.factory.begin() as s:
                    audit.record(
                        s, Principal(kind="user", name=f"w{n}"), "test.write", target=str(i)
                    )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with node.factory() as s:
        report = audit.verify(s, node.node_key)
        seqs = list(s.scalars(text("SELECT seq FROM audit_records ORDER BY seq")))
    assert report.ok, report.first_problem
    assert report.records == 200 and seqs == list(range(1, 201))
    assert report.checkpoints == 200 and report.heads == 200


def test_an_entrys_row_is_every_field_and_the_hash_of_its_canonical_json() -> None:
    import dataclasses
    import hashlib

    entry = audit.Entry.of(
        Principal(kind="client", name="c-1", organization_id=1),
        "resource.read", target="ppl", target_type="resource", keys=["7", "林"], count=2,
        purpose="核验", detail="version=3",
    )  # fmt: skip
    row = entry.row(12, "ab" * 32)
    expected = dataclasses.asdict(entry) | {"seq": 12, "prev_hash": "ab" * 32}
    assert {k: v for k, v in row.items() if k != "hash"} == expected
    assert row["hash"] == hashlib.sha256(audit._canonical(expected)).hexdigest()
    assert row["record_keys"] is not entry.record_keys  # the row's own list
