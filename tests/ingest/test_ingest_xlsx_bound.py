"""A workbook is read within a memory bound: a tiny file naming a far cell is refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.ingest import sources
from tests.ingest.loadkit import COLUMNS, load, make_resource, person, rows


def _bomb(path: Path) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet["A1"] = "id"
    sheet["XFD1048576"] = "far away"  # the last cell a sheet may have
    book.save(path)
    return path


def test_a_workbook_naming_its_last_possible_cell_is_refused_not_read(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    bomb = _bomb(tmp_path / "bomb.xlsx")
    assert bomb.stat().st_size < 8_000
    code, actor = make_resource(sqlite_node)
    job = load(sqlite_node, actor, code, bomb)
    # Read whole, this sheet is 17 billion cells: the process would abort. It is refused.
    assert job.state == jobs.JobState.FAILED
    assert job.error == (
        "the sheet declares 17,179,869,184 cells; at most 10,000,000 are read from a workbook "
        "(save it as CSV to load more)"
    )


def _declared(path: Path, dimension: str) -> Path:
    # A workbook whose XML declares a huge range over two real cells, written by hand.
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/data.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="r1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        ),
        "xl/workbook.xml": (
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            '<sheets><sheet name="data" sheetId="1" r:id="rId7"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId7" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/data.xml"/>'
            "</Relationships>"
        ),
        "xl/worksheets/data.xml": (
            '<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f'<x:dimension ref="{dimension}"/><x:sheetData>'
            '<x:row r="1"><x:c r="A1" t="inlineStr"><x:is><x:t>id</x:t></x:is></x:c></x:row>'
            '<x:row r="2"><x:c s="0" r="A2"><x:v>7</x:v></x:c></x:row>'
            "</x:sheetData></x:worksheet>"
        ),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        for name, text in parts.items():
            book.writestr(name, text)
    return path


def test_the_declared_range_counts_and_a_small_sheet_reads(tmp_path: Path) -> None:
    with pytest.raises(sources.SourceError, match="declares 16,384,000,000 cells"):
        sources.check_xlsx(_declared(tmp_path / "declared.xlsx", "A1:XFD1000000"))
    small = _declared(tmp_path / "small.xlsx", "A1:A2")
    sources.check_xlsx(small)
    assert sources._read_xlsx(small).to_pylist() == [{"id": "7"}]
    with pytest.raises(sources.SourceError, match="declares 2 cells; at most 1"):
        sources.check_xlsx(small, max_cells=1)


def test_a_workbook_is_read_in_batches_of_rows(
    sqlite_node: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "XLSX_BATCH_ROWS", 2)
    code, actor = make_resource(sqlite_node)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(COLUMNS)
    for i in range(1, 6):
        sheet.append([str(person(i)[c]) for c in COLUMNS])
    book.save(tmp_path / "p.xlsx")
    job = load(sqlite_node, actor, code, tmp_path / "p.xlsx")
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    assert sorted(rows(sqlite_node, code).column("id").to_pylist()) == [1, 2, 3, 4, 5]
