"""Where a batch delivery goes: a file (Parquet, CSV, XLSX) kept for download or written into a
folder, or a table in the consumer's own PostgreSQL or MariaDB database.

Every sink delivers a version range exactly once:

- a file is written beside its final name and renamed into place, then its manifest beside
  it; the manifest's presence says the delivery is there (a run that died before writing it
  writes the same file again, under the same name);
- a database table is changed in one transaction of the consumer's database that also
  inserts the delivery's row into `minyun_deliveries` (keyed by node, subscription and
  version): a run that died before the commit left nothing, one that died after it finds the
  row and writes nothing again.

The rows come from the access plan's reader (`Lake.read_table` / `Lake.read_changes`); the
sinks only write what they are given. The checksum of a delivery is the SHA-256 of its rows
rendered as CSV (UTF-8, header line first, Arrow's CSV writer), whatever the sink.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from minyun.core.errors import ConfigError, Invalid
from minyun.core.keys import NodeKey
from minyun.exchange.batch_models import FileFormat, SinkKind

CHANGE = "_change"
CHUNK_ROWS = 100_000
CONNECT_TIMEOUT = 5
BOM = b"\xef\xbb\xbf"
XLSX_MAX_ROWS = 1_048_575  # a sheet's rows, less the header
LEDGER = "minyun_deliveries"
SEAL_PURPOSE = "exchange.sink-credentials"
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SCHEMES = {"postgresql": SinkKind.POSTGRESQL, "postgres": SinkKind.POSTGRESQL,
            "mysql": SinkKind.MARIADB, "mariadb": SinkKind.MARIADB}  # fmt: skip
Progress = Callable[[int], None]


class SinkError(Invalid):
    """The sink cannot be used as given: unknown, unreachable, or outside what is allowed."""

    code = "bad-sink"
    title = "Unusable sink"


@dataclass(frozen=True)
class Batch:
    """The rows of one delivery: `full` (the whole granted part) or `changes` (with `_change`)."""

    table: pa.Table
    kind: str
    primary_key: tuple[str, ...]
    key: str  # node, subscription and versions: the delivery's name everywhere


@dataclass(frozen=True)
class Receipt:
    """What a sink holds of a delivery: rows, checksum, and for files the file."""

    rows: int
    checksum: str
    file_name: str | None = None
    file_sha256: str | None = None


# --- checksum ------------------------------------------------------------------------------


def csv_chunks(table: pa.Table, *, header: bool = True) -> Iterator[tuple[bytes, int]]:
    """The rows as CSV in chunks of CHUNK_ROWS (the header alone first, if asked), with the
    rows each chunk holds. Concatenated, the same bytes whatever the chunking."""
    if header:
        yield _csv(table.slice(0, 0), header=True), 0
    for start in range(0, table.num_rows, CHUNK_ROWS):
        part = table.slice(start, CHUNK_ROWS)
        yield _csv(part, header=False), part.num_rows


def _csv(table: pa.Table, *, header: bool) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(table, out, write_options=pacsv.WriteOptions(include_header=header))
    return out.getvalue()


def checksum(table: pa.Table) -> str:
    """SHA-256 of the rows as CSV, header first (see the module's docstring)."""
    digest = hashlib.sha256()
    for chunk, _ in csv_chunks(table):
        digest.update(chunk)
    return digest.hexdigest()


# --- credentials ---------------------------------------------------------------------------


def public_dsn(dsn: str) -> str:
    """The DSN without user name, password, query or fragment (what pages and jobs show)."""
    parts = urllib.parse.urlsplit(dsn)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", ""))


def seal(dsn: str, key: NodeKey) -> str:
    """The whole DSN sealed (AES-GCM, key derived from the node key) for the job to open."""
    nonce = os.urandom(12)
    sealed = AESGCM(key.derive(SEAL_PURPOSE)).encrypt(nonce, dsn.encode(), public_dsn(dsn).encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(public: str, sealed: str, key: NodeKey) -> str:
    """The DSN `seal` kept; a SinkError if another node key sealed it."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return (
            AESGCM(key.derive(SEAL_PURPOSE)).decrypt(raw[:12], raw[12:], public.encode()).decode()
        )
    except (InvalidTag, ValueError) as exc:
        raise SinkError(f"the credentials of {public} cannot be opened") from exc


# --- checking a sink ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkSpec:
    """A sink as asked for: kind, file format, folder, DSN and table."""

    kind: str
    format: str | None = None
    folder: str | None = None
    dsn: str | None = None
    table: str | None = None


def check_spec(spec: SinkSpec, *, folder_roots: Sequence[Path]) -> SinkSpec:
    """The spec with its parts checked: a known kind, a format for files, a folder under an
    allowed root, a PostgreSQL or MariaDB DSN of that kind and a plain table name."""
    kinds = {str(k) for k in SinkKind}
    if spec.kind not in kinds:
        raise SinkError(
            f"unknown sink {spec.kind!r}; one of {', '.join(sorted(kinds))}",
            field="sink", code="unknown-sink",
        )  # fmt: skip
    if spec.kind in (SinkKind.FILE, SinkKind.FOLDER):
        formats = {str(f) for f in FileFormat}
        if (spec.format or "") not in formats:
            raise SinkError(
                f"a file sink needs a format: one of {', '.join(sorted(formats))}",
                field="format", code="unknown-format",
            )  # fmt: skip
        if spec.kind == SinkKind.FILE:
            return SinkSpec(spec.kind, spec.format)
        return SinkSpec(spec.kind, spec.format, folder=str(check_folder(spec.folder, folder_roots)))
    dsn = (spec.dsn or "").strip()
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    if _SCHEMES.get(scheme) != spec.kind:
        raise SinkError(f"a {spec.kind} sink needs a {spec.kind}:// DSN", field="dsn")
    table = (spec.table or "").strip()
    if not _TABLE.match(table) or table.lower() == LEDGER:
        raise SinkError("the table must be a plain name (letters, digits, _)", field="table")
    return SinkSpec(spec.kind, None, dsn=dsn, table=table)


def check_folder(folder: str | None, roots: Sequence[Path]) -> Path:
    """The folder, resolved, if it lies under one of `roots` (created if missing)."""
    if not folder:
        raise SinkError("a folder sink needs a folder", field="folder")
    path = Path(folder).expanduser().resolve()
    for root in roots:
        root = root.resolve()
        if path == root or root in path.parents:
            path.mkdir(parents=True, exist_ok=True)
            return path
    raise SinkError(
        "the folder is not under a folder this node delivers into (MINYUN_EXCHANGE_FOLDERS)",
        field="folder", code="folder-not-allowed",
    )  # fmt: skip


def reach(kind: str, dsn: str) -> None:
    """Connect to a database sink once; a SinkError saying why not."""
    try:
        if kind == SinkKind.POSTGRESQL:
            import psycopg

            with psycopg.connect(_pg(dsn), connect_timeout=CONNECT_TIMEOUT):
                pass
        else:
            _maria(dsn).close()
    except Exception as exc:
        raise SinkError(
            f"cannot connect to {public_dsn(dsn)}: {_one_line(exc)}",
            field="dsn", code="sink-unreachable",
        ) from exc  # fmt: skip


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --- files ---------------------------------------------------------------------------------


class FileSink:
    """A file per delivery in `folder`, its signed manifest beside it."""

    def __init__(self, folder: Path, fmt: str) -> None:
        if fmt not in {str(f) for f in FileFormat}:
            raise ConfigError(f"unknown file format {fmt!r}")
        self.folder = folder
        self.format = fmt

    def name(self, batch_key: str) -> str:
        return f"{batch_key}.{self.format}"

    def delivered(self, batch_key: str) -> Receipt | None:
        """The receipt of a delivery already in place (its manifest written), else None."""
        manifest = self.folder / f"{self.name(batch_key)}.manifest.json"
        if not manifest.exists():
            return None
        doc = json.loads(manifest.read_text(encoding="utf-8"))["manifest"]
        return Receipt(doc["rows"], doc["checksum"], doc["file"]["name"], doc["file"]["sha256"])

    def write(self, batch: Batch, progress: Progress) -> Receipt:
        """Write the file (beside its name, then renamed into place); the manifest comes after."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / self.name(batch.key)
        part = self.folder / f".{final.name}.part"
        if self.format == FileFormat.PARQUET:
            pq.write_table(batch.table, part, compression="zstd")
        elif self.format == FileFormat.CSV:
            with part.open("wb") as out:
                out.write(BOM)
                for chunk, rows in csv_chunks(batch.table):
                    out.write(chunk)
                    progress(rows)
        else:
            _write_xlsx(batch.table, part)
        with part.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(part, final)
        progress(0)
        return Receipt(batch.table.num_rows, checksum(batch.table), final.name, _sha256(final))

    def seal(self, batch_key: str, signed: dict[str, Any]) -> None:
        """Write the signed manifest beside the file: the delivery is now in place."""
        manifest = self.folder / f"{self.name(batch_key)}.manifest.json"
        part = manifest.with_name(f".{manifest.name}.part")
        part.write_text(json.dumps(signed, ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(part, manifest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_xlsx(table: pa.Table, path: Path) -> None:
    from openpyxl import Workbook

    if table.num_rows > XLSX_MAX_ROWS:
        raise SinkError(
            f"{table.num_rows} rows do not fit in one XLSX sheet; choose Parquet or CSV",
            field="format", code="too-many-rows",
        )  # fmt: skip
    book = Workbook(write_only=True)
    sheet = book.create_sheet("data")
    sheet.append(table.column_names)
    for batch in table.to_batches(max_chunksize=10_000):
        columns = [c.to_pylist() for c in batch.columns]
        for row in zip(*columns, strict=True):  # openpyxl takes rows one by one
            sheet.append([_cell(v) for v in row])
    book.save(path)


def _cell(value: Any) -> Any:
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        return value.replace(tzinfo=None)  # Excel has no time zones
    return value


# --- databases -------------------------------------------------------------------------------


def _pg(dsn: str) -> str:
    return dsn.replace("postgres://", "postgresql://", 1)


def _maria(dsn: str) -> Any:
    import pymysql

    parts = urllib.parse.urlsplit(dsn)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=urllib.parse.unquote(parts.username or "root"),
        password=urllib.parse.unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        charset="utf8mb4",
        connect_timeout=CONNECT_TIMEOUT,
        autocommit=False,
        local_infile=False,
    )


def _pg_type(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_floating(kind):
        return "DOUBLE PRECISION"
    if pa.types.is_decimal(kind):
        return f"NUMERIC({kind.precision}, {kind.scale})"
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    return "TEXT"


def _maria_type(kind: pa.DataType, key: bool) -> str:
    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_floating(kind):
        return "DOUBLE"
    if pa.types.is_decimal(kind):
        return f"DECIMAL({min(kind.precision, 65)}, {min(kind.scale, 30)})"
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_timestamp(kind):
        return "DATETIME(6)"
    return "VARCHAR(255)" if key else "TEXT"


class DatabaseSink:
    """A table in the consumer's database, changed with its ledger row in one transaction."""

    def __init__(self, kind: str, dsn: str, table: str) -> None:
        self.kind = kind
        self.dsn = dsn
        self.table = table

    def delivered(self, batch_key: str) -> Receipt | None:
        """The ledger's row of this delivery, if the consumer's database has it."""
        if self.kind == SinkKind.POSTGRESQL:
            import psycopg

            with psycopg.connect(_pg(self.dsn), connect_timeout=CONNECT_TIMEOUT) as conn:
                conn.execute(_ledger_sql("TEXT"))
                found = conn.execute(
                    f"SELECT rows, checksum FROM {LEDGER} WHERE delivery = %s", (batch_key,)
                ).fetchone()
        else:
            conn = _maria(self.dsn)
            try:
                with conn.cursor() as cur:
                    cur.execute(_ledger_sql("VARCHAR(200)"))
                    cur.execute(
                        f"SELECT `rows`, checksum FROM {LEDGER} WHERE delivery = %s", (batch_key,)
                    )
                    found = cur.fetchone()
                conn.commit()
            finally:
                conn.close()
        return Receipt(int(found[0]), str(found[1])) if found else None

    def write(self, batch: Batch, progress: Progress) -> Receipt:
        """Apply the batch and record it in the ledger, in one transaction of the sink's."""
        if self.kind == SinkKind.POSTGRESQL:
            digest = self._write_pg(batch, progress)
        else:
            digest = checksum(batch.table)
            self._write_maria(batch, digest, progress)
        return Receipt(batch.table.num_rows, digest)

    def _replace(self, held: list[str], fields: list[pa.Field], batch: Batch) -> bool:
        """Whether the table must be rebuilt: it exists with other columns (the grant's fields
        changed) and the batch is a full one; changes cannot be applied to it at all."""
        if not held or held == [f.name for f in fields]:
            return False
        if batch.kind != "full":
            raise SinkError(
                f"table {self.table} has other columns than this delivery's fields",
                field="table", code="sink-columns",
            )  # fmt: skip
        return True

    def _columns(self, batch: Batch) -> list[pa.Field]:
        return [f for f in batch.table.schema if f.name != CHANGE]

    def _write_pg(self, batch: Batch, progress: Progress) -> str:
        """The checksum, taken from the CSV as it is copied (the rows are rendered once)."""
        import psycopg
        from psycopg import sql

        fields = self._columns(batch)
        target = sql.Identifier(self.table)
        names = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields)
        key = [c for c in batch.primary_key if c in {f.name for f in fields}]
        defs = [sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_pg_type(f.type)))
                for f in fields]  # fmt: skip
        if key:
            defs.append(
                sql.SQL("PRIMARY KEY ({})").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in key)
                )
            )
        changes = batch.kind == "changes"
        staged = [*fields, pa.field(CHANGE, pa.string())] if changes else fields
        with psycopg.connect(_pg(self.dsn), connect_timeout=CONNECT_TIMEOUT) as conn:
            conn.execute(_ledger_sql("TEXT"))
            create = sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(defs))
            held = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s "
                "ORDER BY ordinal_position", (self.table,),
            )]  # fmt: skip
            replace = self._replace(held, fields, batch)
            if not held:
                conn.execute(create)
            conn.commit()
            with conn.transaction():
                if replace:  # the granted fields changed: a full delivery rebuilds the table
                    conn.execute(sql.SQL("DROP TABLE {}").format(target))
                    conn.execute(create)
                # Taken in the transaction: a second runner waits here, then finds the row.
                conn.execute(f"LOCK TABLE {LEDGER} IN SHARE ROW EXCLUSIVE MODE")
                kept = conn.execute(
                    f"SELECT checksum FROM {LEDGER} WHERE delivery = %s", (batch.key,)
                ).fetchone()
                if kept:
                    return str(kept[0])
                stage = sql.Identifier(f"minyun_stage_{os.getpid()}")
                stage_defs = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_pg_type(f.type)))
                    for f in staged
                )
                conn.execute(
                    sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(stage, stage_defs)
                )
                staged_names = sql.SQL(", ").join(sql.Identifier(f.name) for f in staged)
                copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(stage, staged_names)
                hashed = hashlib.sha256()
                with conn.cursor() as cur, cur.copy(copy) as out:
                    for chunk, rows in csv_chunks(batch.table):
                        hashed.update(chunk)
                        if rows:  # the header goes into the checksum only
                            out.write(chunk)
                        progress(rows)
                digest = hashed.hexdigest()
                if not changes:
                    conn.execute(sql.SQL("DELETE FROM {}").format(target))
                    conn.execute(
                        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                            target, names, names, stage
                        )
                    )
                else:
                    same = sql.SQL(" AND ").join(
                        sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(c)) for c in key
                    )
                    # Every changed key goes, then the rows that live on come back: two
                    # set operations (faster here than INSERT … ON CONFLICT DO UPDATE).
                    conn.execute(
                        sql.SQL("DELETE FROM {} t USING {} s WHERE {}").format(target, stage, same)
                    )
                    conn.execute(
                        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {} = 'upsert'").format(
                            target, names, names, stage, sql.Identifier(CHANGE)
                        )
                    )
                conn.execute(
                    f"INSERT INTO {LEDGER} (delivery, rows, checksum, delivered_at) "
                    "VALUES (%s, %s, %s, now())",
                    (batch.key, batch.table.num_rows, digest),
                )
        return digest

    def _write_maria(self, batch: Batch, digest: str, progress: Progress) -> None:
        fields = self._columns(batch)
        key = [c for c in batch.primary_key if c in {f.name for f in fields}]
        q = _bq
        defs = [f"{q(f.name)} {_maria_type(f.type, f.name in key)}" for f in fields]
        if key:
            defs.append(f"PRIMARY KEY ({', '.join(q(c) for c in key)})")
        names = ", ".join(q(f.name) for f in fields)
        changes = batch.kind == "changes"
        conn = _maria(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(_ledger_sql("VARCHAR(200)"))
                cur.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = DATABASE() AND table_name = %s "
                    "ORDER BY ordinal_position", (self.table,),
                )  # fmt: skip
                held = [str(r[0]) for r in cur.fetchall()]
                if self._replace(held, fields, batch):
                    # MariaDB commits a DROP at once; the ledger row still says the delivery is
                    # not there, so a run that dies after it delivers the whole again.
                    cur.execute(f"DROP TABLE {q(self.table)}")
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {q(self.table)} ({', '.join(defs)}) "
                    "CHARACTER SET utf8mb4"
                )
                conn.commit()
                conn.begin()
                # The ledger row locked (or its gap): a second runner waits, then finds it.
                cur.execute(f"SELECT 1 FROM {LEDGER} WHERE delivery = %s FOR UPDATE", (batch.key,))
                if cur.fetchone():
                    conn.rollback()
                    return
                rows = batch.table.num_rows
                if not changes:
                    cur.execute(f"DELETE FROM {q(self.table)}")
                    upserts = batch.table
                else:
                    # Every changed key goes (through a staging table: one DELETE), then
                    # the rows that live on come back.
                    stage = f"minyun_stage_{os.getpid()}"
                    key_fields = [batch.table.schema.field(c) for c in key]
                    cur.execute(
                        f"CREATE TEMPORARY TABLE {q(stage)} ("
                        + ", ".join(f"{q(f.name)} {_maria_type(f.type, True)}" for f in key_fields)
                        + ")"
                    )
                    marks = ", ".join(["%s"] * len(key))
                    keys_only = batch.table.select(key)
                    for part in keys_only.to_batches(max_chunksize=5_000):
                        columns = [c.to_pylist() for c in part.columns]
                        cur.executemany(
                            f"INSERT INTO {q(stage)} VALUES ({marks})",
                            list(zip(*columns, strict=True)),
                        )
                    same = " AND ".join(f"t.{q(c)} = s.{q(c)}" for c in key)
                    cur.execute(f"DELETE t FROM {q(self.table)} t JOIN {q(stage)} s ON {same}")
                    cur.execute(f"DROP TEMPORARY TABLE {q(stage)}")
                    upserts = batch.table.filter(
                        pc.equal(batch.table.column(CHANGE), "upsert")
                    ).drop_columns([CHANGE])
                marks = ", ".join(["%s"] * len(fields))
                insert = f"INSERT INTO {q(self.table)} ({names}) VALUES ({marks})"
                for part in upserts.to_batches(max_chunksize=5_000):
                    columns = [c.to_pylist() for c in part.columns]
                    cur.executemany(insert, list(zip(*columns, strict=True)))
                    progress(part.num_rows)
                cur.execute(
                    f"INSERT INTO {LEDGER} (delivery, `rows`, checksum, delivered_at) "
                    "VALUES (%s, %s, %s, NOW())",
                    (batch.key, rows, digest),
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()


def _bq(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _ledger_sql(text_type: str) -> str:
    rows = "`rows`" if text_type.startswith("VARCHAR") else "rows"
    return (
        f"CREATE TABLE IF NOT EXISTS {LEDGER} (delivery {text_type} PRIMARY KEY, "
        f"{rows} BIGINT NOT NULL, checksum VARCHAR(64) NOT NULL, delivered_at TIMESTAMP NOT NULL)"
    )
