"""audit: one server-side step that chains and appends a batch under the chain lock (PostgreSQL)

`minyun_audit_append` takes the chain lock, reads the head with a snapshot taken after the
lock is held (a PL/pgSQL statement of a volatile function gets a fresh snapshot), chains
the batch's records after it and inserts them: one round trip per batch and no conflict
between the processes of a node (docs/decisions/0005). Each record's hash is SHA-256 of
its canonical JSON, as before: the caller sends every record's JSON around the two values
only this step knows, `prev_hash` and `seq` (`before` ‖ prev_hash ‖ `between` ‖ seq ‖ `}`).
Optionally it inserts a signed checkpoint of an earlier batch in the same transaction.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 21:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE OR REPLACE FUNCTION minyun_audit_append(
    lock_key bigint,
    p_before text[], p_between text[],
    p_at timestamptz[], p_actor text[], p_on_behalf_of text[], p_action text[],
    p_object_type text[], p_object_id text[], p_record_keys text[], p_record_count bigint[],
    p_purpose text[], p_outcome text[], p_detail text[], p_request_id text[],
    p_client_ip text[],
    cp_seq bigint, cp_hash text, cp_at timestamptz, cp_key_id text, cp_signature text,
    OUT first_seq bigint, OUT last_seq bigint, OUT last_hash text
) LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    n integer := coalesce(array_length(p_before, 1), 0);
    seqs bigint[] := '{}';
    prevs text[] := '{}';
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
        seqs[i] := head_seq;
        prevs[i] := head_hash;
        head_hash := encode(sha256(convert_to(
            p_before[i] || head_hash || p_between[i] || head_seq::text || '}', 'UTF8')), 'hex');
        hashes[i] := head_hash;
    END LOOP;
    INSERT INTO audit_records (
        seq, at, actor, on_behalf_of, action, object_type, object_id, record_keys,
        record_count, purpose, outcome, detail, request_id, client_ip, prev_hash, hash)
    SELECT u.seq, u.at, u.actor, u.on_behalf_of, u.action, u.object_type, u.object_id,
           u.record_keys::json, u.record_count, u.purpose, u.outcome, u.detail,
           u.request_id, u.client_ip, u.prev_hash, u.hash
      FROM unnest(seqs, p_at, p_actor, p_on_behalf_of, p_action, p_object_type, p_object_id,
                  p_record_keys, p_record_count, p_purpose, p_outcome, p_detail,
                  p_request_id, p_client_ip, prevs, hashes)
        AS u(seq, at, actor, on_behalf_of, action, object_type, object_id, record_keys,
             record_count, purpose, outcome, detail, request_id, client_ip, prev_hash, hash);
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

SIGNATURE = (
    "bigint, text[], text[], timestamptz[], text[], text[], text[], text[], text[], text[],"
    " bigint[], text[], text[], text[], text[], text[], bigint, text, timestamptz, text, text"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS minyun_audit_append({SIGNATURE})")
