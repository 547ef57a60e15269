"""audit: the batch step takes each record's canonical JSON only and stores what it hashed (PostgreSQL)

`minyun_audit_append_docs` replaces 0012's `minyun_audit_append`. The caller sends each
record's canonical JSON around `prev_hash` and `seq` (`Entry.parts`) and nothing else: the
step takes the chain lock, reads the head with a snapshot taken after the lock is held,
chains the records (SHA-256 of before ‖ prev_hash ‖ between ‖ seq ‖ `}`, the same text
Python hashes) and inserts each record's columns as read back from that very text
(`json_populate_record`). One array instead of fifteen per batch, and what is stored is
provably what was hashed (docs/decisions/0005).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 23:10:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE OR REPLACE FUNCTION minyun_audit_append_docs(
    lock_key bigint, p_before text[], p_between text[],
    cp_seq bigint, cp_hash text, cp_at timestamptz, cp_key_id text, cp_signature text,
    OUT first_seq bigint, OUT last_seq bigint, OUT last_hash text
) LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    n integer := coalesce(array_length(p_before, 1), 0);
    docs text[] := '{}';
    hashes text[] := '{}';
    head_seq bigint;
    head_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT r.seq, r.hash INTO head_seq, head_hash
      FROM audit_records r ORDER BY r.seq DESC LIMIT 1;
    IF head_seq IS NULL THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
    END IF;
    first_seq := head_seq + 1;
    FOR i IN 1 .. n LOOP
        head_seq := head_seq + 1;
        docs[i] := p_before[i] || head_hash || p_between[i] || head_seq::text || '}';
        head_hash := encode(sha256(convert_to(docs[i], 'UTF8')), 'hex');
        hashes[i] := head_hash;
    END LOOP;
    INSERT INTO audit_records (
        seq, at, actor, on_behalf_of, action, object_type, object_id, record_keys,
        record_count, purpose, outcome, detail, request_id, client_ip, prev_hash, hash)
    SELECT r.seq, r.at, r.actor, r.on_behalf_of, r.action, r.object_type, r.object_id,
           r.record_keys, r.record_count, r.purpose, r.outcome, r.detail, r.request_id,
           r.client_ip, r.prev_hash, u.hash
      FROM unnest(docs, hashes) AS u(doc, hash),
           LATERAL json_populate_record(NULL::audit_records, u.doc::json) AS r;
    IF cp_seq IS NOT NULL THEN
        INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature)
        VALUES (cp_seq, cp_hash, cp_at, cp_key_id, cp_signature)
        ON CONFLICT (seq) DO NOTHING;
    END IF;
    last_seq := head_seq;
    last_hash := head_hash;
END
$fn$
"""

SIGNATURE = "bigint, text[], text[], bigint, text, timestamptz, text, text"


def _step_0012() -> ModuleType:
    """Migration 0012's module, whose function the downgrade puts back."""
    path = Path(__file__).with_name("0012_audit_append.py")
    spec = importlib.util.spec_from_file_location("minyun_migration_0012", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"migration 0012 is missing: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)
        op.execute(f"DROP FUNCTION IF EXISTS minyun_audit_append({_step_0012().SIGNATURE})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_step_0012().FUNCTION)
        op.execute(f"DROP FUNCTION IF EXISTS minyun_audit_append_docs({SIGNATURE})")
