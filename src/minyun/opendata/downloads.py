"""Download formats of an open dataset, written batch by batch as they are sent.

CSV is UTF-8 with a byte-order mark, so Excel opens Chinese text right; JSON is one array
of objects; Parquet is written row group by row group; XLSX (xlsxwriter's constant-memory
mode) is built in a temporary file and streamed, up to Excel's row limit. No format holds
the whole table in memory.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from minyun.core.errors import Invalid

BOM = b"\xef\xbb\xbf"
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet holds 1,048,576 rows, one of them the header
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class _Sink(io.RawIOBase):
    """A write-only file whose bytes are taken out as they are written."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        return out


def csv(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    yield BOM
    sink = _Sink()
    writer = pacsv.CSVWriter(sink, schema)
    for batch in batches:
        writer.write_batch(batch)
        yield sink.take()
    writer.close()
    yield sink.take()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def json_array(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    yield b"["
    first = True
    for batch in batches:
        if batch.num_rows == 0:
            continue
        body = json.dumps(batch.to_pylist(), ensure_ascii=False, default=_plain)[1:-1]
        yield (body if first else "," + body).encode()
        first = False
    yield b"]"


def parquet(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    for batch in batches:
        writer.write_batch(batch)
        yield sink.take()
    writer.close()
    yield sink.take()


def xlsx(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    import xlsxwriter

    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        book = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_numbers": False,
                                          "strings_to_formulas": False, "strings_to_urls": False})  # fmt: skip
        sheet = book.add_worksheet("data")
        for col, name in enumerate(schema.names):
            sheet.write_string(0, col, name)
        row = 1
        for batch in batches:
            if row + batch.num_rows > XLSX_MAX_ROWS + 1:
                raise Invalid(
                    "more rows than an Excel sheet holds: download CSV or Parquet", field="format"
                )
            for values in batch.to_pylist():
                for col, value in enumerate(values.values()):
                    if value is None:
                        continue
                    if isinstance(value, Decimal):
                        value = _plain(value)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        sheet.write_number(row, col, value)
                    else:
                        sheet.write_string(
                            row, col, _plain(value) if not isinstance(value, str) else value
                        )
                row += 1
        book.close()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
    finally:
        os.unlink(path)


ENCODERS = {"csv": csv, "json": json_array, "parquet": parquet, "xlsx": xlsx}
