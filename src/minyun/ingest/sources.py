"""Where a load's rows come from: an uploaded file, a URL, or a department's database table.

Every source is first brought to a local file (an upload or download is streamed to disk
under a size limit; a database table is dumped as CSV over a real connection), its SHA-256
taken (a local file's beside the read), and read once by `write_parts`: one DuckDB query
casts every column to its lake type, checks the row rules and writes Parquet files of the
rows that pass, counting the rows it read, so validation and writing have one code path
whatever the source was.
`numbered` is the same source with its row number `__row` (1-based, data rows), read
again only to report rejected rows.
"""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import pyarrow as pa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from minyun.core.errors import ConfigError, Invalid
from minyun.core.keys import NodeKey

CHUNK = 4 << 20
ROW = "__row"
FILE_KINDS = ("csv", "xlsx", "jsonl", "parquet")
# DuckDB optimizers every connection that reads a source turns off. `type_pushdown` moves a
# TRY_CAST into the CSV reader, which then casts strictly: one impossible date (1985-02-30)
# failed the whole read instead of refusing its row (DuckDB 2.0.0).
UNSAFE_OPTIMIZERS = "type_pushdown"
DB_SCHEMES = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mariadb",
    "mariadb": "mariadb",
}
_EXTENSIONS = {
    ".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl",
    ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
}  # fmt: skip
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class SourceError(Invalid):
    """The input cannot be read as what it claims to be."""

    code = "bad-source"
    title = "Unreadable source"


@dataclass(frozen=True)
class Fetched:
    """A source brought to a local file."""

    path: Path
    kind: str  # csv, xlsx, jsonl, parquet
    source_kind: str  # the Version's source_kind: a file kind, url, postgres, mariadb
    label: str  # what the lineage shows: a file name, a URL, a DSN without credentials
    sha256: str
    size: int


def source_type(source: str) -> str:
    """'url', 'db' or 'file'."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("http", "https"):
        return "url"
    if scheme in DB_SCHEMES:
        return "db"
    return "file"


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def save_stream(chunks: Iterable[bytes], uploads: Path, *, limit: int) -> tuple[Path, str, int]:
    """Stream bytes to `<uploads>/<sha256>`, refusing more than `limit` bytes; (path, sha, size)."""
    uploads.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=uploads, prefix=".upload-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise SourceError(
                        f"the upload is larger than the limit of {_human(limit)}",
                        code="too-large",
                        limit=limit,
                    )
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        final = uploads / sha
        os.replace(tmp, final)
        return final, sha, size
    finally:
        tmp.unlink(missing_ok=True)


def save_file(fileobj: BinaryIO, uploads: Path, *, limit: int) -> tuple[Path, str, int]:
    """save_stream over a file object."""
    return save_stream(iter(lambda: fileobj.read(CHUNK), b""), uploads, limit=limit)


def sweep_uploads(uploads: Path, *, older_than_s: float, keep: set[Path]) -> list[Path]:
    """Delete the uploads (files named by their SHA-256) older than `older_than_s` seconds,
    except those in `keep`; the files deleted."""
    limit = time.time() - older_than_s
    gone = []
    for path in uploads.iterdir():
        if not path.is_file() or path.resolve() in keep:
            continue
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                gone.append(path)
        except FileNotFoundError:
            continue  # deleted by another load's sweep just now
    return gone


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n //= 1024
    return str(n)


def file_kind(path: Path, filename: str | None = None) -> str:
    """The file kind by its name's extension, else by its first bytes."""
    for name in (filename, path.name):
        if name:
            kind = _EXTENSIONS.get(Path(name.split("?")[0]).suffix.lower())
            if kind:
                return kind
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


def fetch_file(
    path: Path, *, filename: str | None = None, sha256: str | None = None, hash_later: bool = False
) -> Fetched:
    """A local file (an upload already saved, or an operator's path).

    With `hash_later` its SHA-256 is left empty for the caller to take beside the read.
    """
    if not path.is_file():
        raise SourceError(f"no file {path}", field="source")
    kind = file_kind(path, filename)
    return Fetched(
        path=path,
        kind=kind,
        source_kind=kind,
        label=filename or path.name,
        sha256=sha256 or ("" if hash_later else sha256_file(path)),
        size=path.stat().st_size,
    )


def fetch_url(url: str, uploads: Path, *, limit: int, timeout: float = 60.0) -> Fetched:
    """Download a URL to the uploads folder, streamed and size-limited."""
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise SourceError(f"{_safe_url(url)} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise SourceError(
                    f"{_safe_url(url)} is larger than the limit of {_human(limit)}",
                    code="too-large",
                )
            path, sha, size = save_stream(response.iter_bytes(CHUNK), uploads, limit=limit)
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot download {_safe_url(url)}: {exc}") from exc
    kind = file_kind(path, urllib.parse.urlsplit(url).path)
    return Fetched(path, kind, "url", _safe_url(url), sha, size)


def _safe_url(url: str) -> str:
    """The URL without user name, password, query string or fragment (any may hold a secret)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number: left out, the load will say what is wrong
        port = None
    if port:
        host = f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- credentials of a source -------------------------------------------------------
# A job's parameters are stored in the control plane and shown on its page: they keep the
# source without credentials; the whole source, password included, is sealed (AES-GCM)
# with a key derived from the node key, which never leaves var/. Only the load opens it.

SEAL_PURPOSE = "ingest.source-credentials"


def seal_source(source: str, key: NodeKey | None) -> tuple[str, str | None]:
    """(the source without credentials, the whole source sealed, or None if nothing is secret)."""
    if source_type(source) == "file":
        return source, None
    public = _safe_url(source)
    if public == source:
        return source, None
    if key is None:
        raise ConfigError("a source with credentials needs the node key to keep them")
    nonce = os.urandom(12)
    sealed = AESGCM(key.derive(SEAL_PURPOSE)).encrypt(nonce, source.encode(), public.encode())
    return public, base64.urlsafe_b64encode(nonce + sealed).decode()


def open_source(public: str, sealed: str | None, key: NodeKey | None) -> str:
    """The whole source of a job: `public` with the credentials `seal_source` kept aside."""
    if sealed is None:
        return public
    if key is None:
        raise ConfigError("opening a source's credentials needs the node key")
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        opened = AESGCM(key.derive(SEAL_PURPOSE)).decrypt(raw[:12], raw[12:], public.encode())
    except (InvalidTag, ValueError) as exc:
        raise SourceError(
            f"the credentials of {public} cannot be opened (sealed by another node key?)"
        ) from exc
    return opened.decode()


def fetch_table(
    dsn: str,
    table: str | None,
    work: Path,
    *,
    watermark: tuple[str, str] | None = None,
) -> Fetched:
    """Dump a department's table as CSV over a real connection (PostgreSQL or MariaDB).

    `watermark` = (column, last value): only rows with column > last value are pulled.
    """
    if not table:
        raise SourceError("a database source needs --table", field="table")
    if not _IDENT.match(table):
        raise SourceError(f"table name {table!r} is not a plain [schema.]table name", field="table")
    if watermark is not None and not _IDENT.match(watermark[0]):
        raise SourceError(
            f"watermark column {watermark[0]!r} is not a plain name", field="watermark"
        )
    scheme = dsn.split("://", 1)[0].lower()
    flavour = DB_SCHEMES[scheme]
    out = work / "table.csv"
    label = f"{_safe_url(dsn)}#{table}"
    try:
        if flavour == "postgres":
            _dump_postgres(dsn, table, out, watermark)
        else:
            _dump_mariadb(dsn, table, out, watermark)
    except SourceError:
        raise
    except Exception as exc:  # any driver error: the DSN, the network, the table
        raise SourceError(f"cannot read {label}: {_one_line(exc)}", field="source") from exc
    return Fetched(out, "csv", flavour, label, sha256_file(out), out.stat().st_size)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _dump_postgres(dsn: str, table: str, out: Path, watermark: tuple[str, str] | None) -> None:
    import psycopg
    from psycopg import sql

    name = sql.Identifier(*table.split("."))
    query = sql.SQL("SELECT * FROM {}").format(name)
    if watermark is not None:
        query = sql.SQL("SELECT * FROM {} WHERE {} > {} ORDER BY {}").format(
            name,
            sql.Identifier(watermark[0]),
            sql.Literal(watermark[1]),
            sql.Identifier(watermark[0]),
        )
    dsn = dsn.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(dsn, connect_timeout=10) as conn, conn.cursor() as cur:
        copy_sql = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(query)
        with out.open("wb") as f, cur.copy(copy_sql) as copy:
            for chunk in copy:
                f.write(chunk)


def _dump_mariadb(dsn: str, table: str, out: Path, watermark: tuple[str, str] | None) -> None:
    import pymysql
    import pymysql.cursors

    parts = urllib.parse.urlsplit(dsn)
    quoted = ".".join(f"`{p}`" for p in table.split("."))
    query = f"SELECT * FROM {quoted}"
    args: tuple[Any, ...] = ()
    if watermark is not None:
        query += f" WHERE `{watermark[0]}` > %s ORDER BY `{watermark[0]}`"
        args = (watermark[1],)
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=urllib.parse.unquote(parts.username or "root"),
        password=urllib.parse.unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        charset="utf8mb4",
        connect_timeout=10,
        cursorclass=pymysql.cursors.SSCursor,
    )
    try:
        with conn.cursor() as cur, out.open("w", newline="", encoding="utf-8") as f:
            cur.execute(query, args)
            writer = csv.writer(f)
            writer.writerow([d[0] for d in cur.description])
            # The driver hands rows over one by one; csv.writerows takes them in C.
            while rows := cur.fetchmany(10_000):
                writer.writerows(rows)
    finally:
        conn.close()


# --- staging ------------------------------------------------------------------------


def text_encoding(encoding: str) -> codecs.CodecInfo:
    """The codec of a text encoding (GBK, GB18030, ...); SourceError for anything else.

    Python's codec registry also holds bytes-to-bytes and text-to-text transforms (base64,
    zlib_codec, rot13): they are not encodings a file's text can be in.
    """
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError) as exc:
        raise SourceError(f"unknown text encoding {encoding!r}", field="encoding") from exc
    if not info._is_text_encoding:
        raise SourceError(f"unknown text encoding {encoding!r}", field="encoding")
    return info


def transcode(path: Path, encoding: str, work: Path) -> Path:
    """A UTF-8 copy of a text file in another encoding (GBK, GB18030, ...), in chunks."""
    enc = text_encoding(encoding).name
    if enc == "utf-8":
        return path
    decoder = codecs.getincrementaldecoder(enc)(errors="strict")
    out = work / "utf8.csv"
    offset = 0
    try:
        with path.open("rb") as src, out.open("w", encoding="utf-8", newline="") as dst:
            while chunk := src.read(CHUNK):
                dst.write(decoder.decode(chunk))
                offset += len(chunk)
            dst.write(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"the file is not valid {encoding} (bad bytes at offset {offset + exc.start})",
            field="encoding",
        ) from exc
    return out


def relation_sql(con: duckdb.DuckDBPyConnection, fetched: Fetched, work: Path,
                 *, encoding: str | None, fields: list[str]) -> str:  # fmt: skip
    """A DuckDB FROM-clause reading the source; XLSX is read with calamine and registered."""
    path = fetched.path
    if fetched.kind == "csv":
        if encoding:
            path = transcode(path, encoding, work)
        return (
            f"read_csv({_lit(path)}, all_varchar=true, header=true, strict_mode=true, "
            f"delim={_lit(_delimiter(path))}, quote='\"', escape='\"', null_padding=false)"
        )
    if fetched.kind == "jsonl":
        columns = ", ".join(f"{_lit(f)}: 'VARCHAR'" for f in fields)
        return f"read_json({_lit(path)}, format='newline_delimited', columns={{{columns}}})"
    if fetched.kind == "parquet":
        return f"read_parquet({_lit(path)})"
    if fetched.kind == "xlsx":
        con.register("__xlsx", _read_xlsx(path))
        return "__xlsx"
    raise SourceError(f"unknown file kind {fetched.kind}")


def _delimiter(path: Path) -> str:
    """The delimiter of the header line: the most frequent of , tab ; | (comma on a tie)."""
    with path.open("rb") as f:
        head = f.readline(1 << 16)
    counts = {d: head.count(d.encode()) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _lit(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# A workbook is read into memory by calamine, one cell slot per cell of the sheet's range
# (from A1 to its last cell): a sheet whose range is larger than this is refused before it
# is read, whatever its file size (a 1.5 KB workbook can name cell XFD1048576).
MAX_XLSX_CELLS = 10_000_000
# The shared strings are held in memory whole: a bound on their XML part.
MAX_XLSX_STRINGS_BYTES = 512 << 20
XLSX_BATCH_ROWS = 65_536

_XLSX_DIMENSION = re.compile(
    rb"<(?:\w+:)?dimension\b[^>]*?\sref=\"\$?([A-Z]+)\$?(\d+)(?::\$?([A-Z]+)\$?(\d+))?\""
)
_XLSX_CELL = re.compile(rb"<(?:\w+:)?c\s[^>]*?\br=\"([A-Z]{1,7})(\d{1,10})\"")
_XLSX_ROW = re.compile(rb"<(?:\w+:)?row\s[^>]*?\br=\"(\d{1,10})\"")


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n


def _first_sheet_part(book: zipfile.ZipFile) -> str | None:
    """The zip member of the workbook's first sheet (the one a load reads), if it says."""
    try:
        workbook = book.read("xl/workbook.xml")
        rels = book.read("xl/_rels/workbook.xml.rels")
    except KeyError:
        return None
    sheet = re.search(rb"<(?:\w+:)?sheet\b[^>]*?\b(?:\w+:)?id=\"([^\"]+)\"", workbook)
    if sheet is None:
        return None
    for rel in re.finditer(rb"<(?:\w+:)?Relationship\b[^>]*>", rels):
        tag = rel.group(0)
        rel_id = re.search(rb"\sId=\"([^\"]+)\"", tag)
        target = re.search(rb"\sTarget=\"([^\"]+)\"", tag)
        if rel_id and target and rel_id.group(1) == sheet.group(1):
            name = target.group(1).decode("utf-8", "replace")
            return name.lstrip("/") if name.startswith("/") else f"xl/{name}"
    return None


def _sheet_cells(book: zipfile.ZipFile, part: str) -> int:
    """How many cells the sheet's range holds, from A1: the larger of what its dimension
    declares and where its cells are. Streams the part; never holds it whole."""
    rows = cols = 0
    tail = b""
    with book.open(part) as f:
        while chunk := f.read(CHUNK):
            text = tail + chunk
            for m in _XLSX_DIMENSION.finditer(text):
                last_col, last_row = (m.group(3), m.group(4)) if m.group(3) else m.group(1, 2)
                cols = max(cols, _column_number(last_col))
                rows = max(rows, int(last_row))
            for m in _XLSX_CELL.finditer(text):
                cols = max(cols, _column_number(m.group(1)))
                rows = max(rows, int(m.group(2)))
            for m in _XLSX_ROW.finditer(text):
                rows = max(rows, int(m.group(1)))
            tail = text[-1024:]  # a tag cut by the chunk's end is read whole next time
    return rows * cols


def check_xlsx(path: Path, *, max_cells: int = MAX_XLSX_CELLS) -> None:
    """Refuse a workbook whose first sheet would not fit the memory bound when read."""
    try:
        with zipfile.ZipFile(path) as book:
            names = set(book.namelist())
            part = _first_sheet_part(book)
            parts = [part] if part in names else sorted(
                n for n in names if n.startswith("xl/worksheets/") and n.endswith(".xml")
            )  # fmt: skip
            for name in parts:
                cells = _sheet_cells(book, name)
                if cells > max_cells:
                    raise SourceError(
                        f"the sheet declares {cells:,} cells; at most {max_cells:,} are read "
                        "from a workbook (save it as CSV to load more)"
                    )
            strings = next(
                (i for i in book.infolist() if i.filename == "xl/sharedStrings.xml"), None
            )
            if strings is not None and strings.file_size > MAX_XLSX_STRINGS_BYTES:
                raise SourceError(
                    f"the workbook's shared strings take {_human(strings.file_size)}; at most "
                    f"{_human(MAX_XLSX_STRINGS_BYTES)} (save it as CSV to load it)"
                )
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SourceError(f"cannot read the workbook: {_one_line(exc)}") from exc


def _read_xlsx(path: Path) -> pa.Table:
    from python_calamine import CalamineWorkbook

    check_xlsx(path)
    try:
        sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
        lead = [""] * sheet.start[1] if sheet.start else []  # columns before the first cell
        rows = iter(sheet.iter_rows())
        first = next(rows, None)
        if first is None:
            raise SourceError("the workbook's first sheet is empty")
        header = [str(h).strip() for h in lead + list(first)]
        batches: list[pa.RecordBatch] = []
        schema = pa.schema([(name, pa.string()) for name in header])
        while True:
            body = [lead + list(r) for r in itertools.islice(rows, XLSX_BATCH_ROWS)]
            if not body:
                break
            columns = list(zip(*body, strict=True))
            batches.append(
                pa.record_batch([pa.array(_cells(c), pa.string()) for c in columns], schema=schema)
            )
    except SourceError:
        raise
    except Exception as exc:  # calamine raises its own types for a damaged workbook
        raise SourceError(f"cannot read the workbook: {_one_line(exc)}") from exc
    return pa.Table.from_batches(batches, schema=schema)


def _cells(values: tuple[Any, ...]) -> list[str | None]:
    # Spreadsheet cells arrive as Python values from the reader; render them as text once.
    return [
        None
        if v is None or v == ""
        else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
        for v in values
    ]


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    """The column names the source has (reads only its head)."""
    try:
        return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    except duckdb.Error as exc:
        raise SourceError(f"cannot read the source: {_duck_message(exc)}") from exc


@dataclass(frozen=True)
class Part:
    """One Parquet file written by `write_parts`."""

    path: Path
    rows: int
    size: int
    stats: dict[str, dict[str, str]]  # column -> DuckDB's statistics (min, max, null_count, ...)


@dataclass(frozen=True)
class Written:
    """What one pass over the source wrote: the files of passing rows, and how many rows it read."""

    parts: list[Part]
    rows_read: int


def numbered(relation: str, columns: list[str], *, where: str | None = None) -> str:
    """A FROM item: the source's columns with their 1-based row number `__row`."""
    cols = ", ".join(_q(c) for c in columns)
    # row_number() OVER () is a streaming window in DuckDB: it numbers rows in file order.
    inner = f"SELECT row_number() OVER () AS {ROW}, {cols} FROM {relation}"
    return f"(SELECT * FROM ({inner})" + (f" WHERE {where})" if where else ")")


def write_parts(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    select: str,
    ok: str,
    out: Path,
    *,
    where: str | None = None,
    count: bool = True,
    row_group_rows: int = 122_880,
    row_groups_per_file: int = 8,
) -> Written:
    """Read the source once: the typed rows (`select`, over `src`) for which `ok` holds, to Parquet.

    DuckDB writes with all its threads, each thread its own files, and does not keep the
    file order (nothing needs it). A file is closed after `row_groups_per_file` row
    groups (about a million rows), so each file holds a stretch of the source: a later
    merge on keys that come in order rewrites and reads only the files of its stretch.
    Rows that fail `ok` are not written: they are counted, as the rows the scan read
    minus the rows written, and reported by a second read only when there are some. The scan's count comes from DuckDB's query profile, with filter
    pushdown off so no filter reaches into the scan; with a `where` (a watermark), or a
    profile without the count, the rows are counted by a query of their own (`count=False`:
    not at all, `rows_read` is then the rows written).
    """
    query = f"SELECT {select} FROM {relation} AS src WHERE {ok}" + (
        f" AND ({where})" if where else ""
    )
    disabled = con.execute("SELECT current_setting('disabled_optimizers')").fetchall()[0][0]
    also = ",".join(filter(None, [disabled, "filter_pushdown"]))
    try:
        con.sql("SET preserve_insertion_order = false")
        con.sql(f"SET disabled_optimizers = {_lit(also)}")
        con.sql("SET enable_profiling = 'no_output'")
        found = con.execute(
            f"COPY ({query}) TO {_lit(out)} (FORMAT parquet, PER_THREAD_OUTPUT, RETURN_STATS, "
            f"FILENAME_PATTERN 'part-{{uuid}}', ROW_GROUP_SIZE {int(row_group_rows)}, "
            f"ROW_GROUPS_PER_FILE {int(row_groups_per_file)})"
        )
        names = [d[0] for d in found.description or ()]
        rows = [dict(zip(names, r, strict=True)) for r in found.fetchall()]
        profile = con.get_profiling_information(format="json") if count and not where else None
        scanned = _scanned_rows(profile) if profile else None
    except duckdb.Error as exc:
        raise SourceError(f"cannot read the source: {_duck_message(exc)}") from exc
    finally:
        con.sql("RESET enable_profiling")
        con.sql(f"SET disabled_optimizers = {_lit(disabled or '')}")
        con.sql("SET preserve_insertion_order = true")
    parts = []
    for r in rows:
        path = Path(r["filename"])
        if not int(r["count"]):  # DuckDB leaves an empty file when nothing passed
            path.unlink(missing_ok=True)
            continue
        stats = {_unq(k): dict(v) for k, v in (r.get("column_statistics") or {}).items()}
        parts.append(Part(path, int(r["count"]), int(r["file_size_bytes"]), stats))
    if not count:
        scanned = sum(part.rows for part in parts)
    elif scanned is None:
        scanned = count_rows(con, relation, where=where)
    return Written(parts, scanned)


def count_rows(con: duckdb.DuckDBPyConnection, relation: str, *, where: str | None = None) -> int:
    """The number of rows of the source (those matching `where`, if given)."""
    query = f"SELECT count(*) FROM {relation} AS src" + (f" WHERE {where}" if where else "")
    try:
        return int(con.execute(query).fetchall()[0][0])
    except duckdb.Error as exc:
        raise SourceError(f"cannot read the source: {_duck_message(exc)}") from exc


# Leaves of a query plan that are not the source: constant lists (IN), CTE and join helpers.
_NOT_SOURCE = {
    "COLUMN_DATA_SCAN",
    "DUMMY_SCAN",
    "CHUNK_SCAN",
    "DELIM_SCAN",
    "CTE_SCAN",
    "EMPTY_RESULT",
}


def _scanned_rows(profile: str) -> int | None:
    """The rows the one source scan of a profiled query produced; None if that is not clear."""
    counts: list[int] = []

    def walk(node: dict[str, Any]) -> None:
        children = node.get("children") or []
        kind = str(node.get("operator_type") or node.get("type") or "")
        if not children and kind.endswith("SCAN") and kind not in _NOT_SOURCE:
            value = node.get("operator_cardinality", node.get("intermediate_rows"))
            if isinstance(value, int):
                counts.append(value)
        for child in children:
            walk(child)

    try:
        tree = json.loads(profile)
    except ValueError:
        return None
    roots = tree.get("children") or tree.get("operator") or []
    for root in roots if isinstance(roots, list) else []:
        walk(root)
    return counts[0] if len(counts) == 1 else None


def _unq(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duck_message(exc: duckdb.Error) -> str:
    text = str(exc)
    if "Invalid unicode" in text or "byte sequence" in text.lower():
        return "the file is not valid UTF-8; give its encoding (e.g. --encoding gb18030)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = " ".join(lines[:3])[:500]
    if "CSV parsing dialect" in text or "Expected Number of Columns" in text:
        return f"the file is not well-formed CSV (truncated, or rows of unequal length): {detail}"
    return detail


def cleanup(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
