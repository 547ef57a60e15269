"""A schema proposed from a sample file: types, required, formats, key; bad samples refused."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.core import audit
from minyun.core.errors import Forbidden, Invalid
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.tableschema import check_loadable, parse_schema
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.ingest.sources import SourceError
from tests import factories
from tests.conftest import make_settings
from tests.ingest.loadkit import COLUMNS, person, write_csv


def _steward(session: Session) -> Principal:
    org = factories.make_org(session)
    return Principal(kind="user", name="steward", organization_id=org.id,
                     roles=frozenset({"steward"}))  # fmt: skip


def _infer(platform: Platform, data: bytes, filename: str, **kw: object) -> service.infer.Sample:
    with unit_of_work(platform.factory) as session:
        return service.infer_sample(
            session, _steward(session), io.BytesIO(data), filename=filename,
            settings=platform.settings, **kw,  # type: ignore[arg-type]
        )  # fmt: skip


def test_a_csv_sample_gives_types_required_formats_and_a_key(
    platform: Platform, tmp_path: Path
) -> None:
    rows = [person(n) for n in range(1, 31)]
    rows[4]["sex"] = None  # one empty value: not required
    data = write_csv(tmp_path / "p.csv", rows).read_bytes()
    sample = _infer(platform, data, "人口.csv")
    fields = {f["name"]: f for f in sample.descriptor["fields"]}
    assert [f["name"] for f in sample.descriptor["fields"]] == COLUMNS  # the file's order
    assert sample.rows == 30 and sample.head[0]["name"] == "人1"
    assert fields["id"]["type"] == "integer" and fields["score"]["type"] == "integer"
    assert fields["birth"]["type"] == "date" and fields["updated"]["type"] == "datetime"
    assert fields["ric"]["format"] == "cn-ric" and fields["ric"]["sensitivity"] == "sensitive"
    assert fields["ric"]["mask"] == "keep(3,4)"
    assert fields["employer"]["format"] == "cn-uscc"
    assert fields["county"]["codelist"] == "GB/T 2260"  # division codes, not numbers
    assert fields["phone"]["type"] == "string"  # a telephone number is no quantity
    assert fields["name"]["mask"] == "name"
    assert fields["id"]["constraints"] == {"required": True}
    assert "constraints" not in fields["sex"]
    assert sample.descriptor["primaryKey"] == ["ric"]  # identity numbers first
    check_loadable(parse_schema(sample.descriptor))  # what it proposes is a valid schema
    # Nothing of the sample is kept.
    assert list((platform.settings.var_dir / "work").iterdir()) == []


def test_chinese_headers_become_titles_and_gbk_needs_its_encoding(platform: Platform) -> None:
    text = "姓名,公民身份号码,住址,出生日期\n" + "".join(
        f"林{n},{person(n)['ric']},福建省福州市鼓楼区{n}号,1980-01-{n:02d}\n" for n in range(1, 9)
    )
    with pytest.raises(SourceError) as refused:
        _infer(platform, text.encode("gbk"), "gbk.csv")
    assert refused.value.extra["field"] == "encoding" and refused.value.code == "wrong-encoding"
    sample = _infer(platform, text.encode("gbk"), "gbk.csv", encoding="gbk")
    by_name = {f["name"]: f for f in sample.descriptor["fields"]}
    assert by_name["姓名"]["title"] == "姓名" and by_name["姓名"]["mask"] == "name"
    assert by_name["公民身份号码"]["format"] == "cn-ric"
    assert by_name["住址"]["mask"] == "address(county)"
    assert by_name["出生日期"]["mask"] == "date(year)"
    with pytest.raises(SourceError) as unknown:
        _infer(platform, text.encode("gbk"), "gbk.csv", encoding="klingon")
    assert unknown.value.extra["field"] == "encoding"


def test_parquet_and_json_lines_samples(platform: Platform, tmp_path: Path) -> None:
    table = pa.table({"code": ["a1", "a2", "a3"], "n": [1, 2, 3], "ok": [True, False, True]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    sample = _infer(platform, buffer.getvalue(), "t.parquet")
    types = {f["name"]: f["type"] for f in sample.descriptor["fields"]}
    assert types == {"code": "string", "n": "integer", "ok": "boolean"}
    lines = "".join(json.dumps({"id": n, "when": f"2024-01-0{n} 08:00:00"}) + "\n" for n in (1, 2))
    sample = _infer(platform, lines.encode(), "t.jsonl")
    types = {f["name"]: f["type"] for f in sample.descriptor["fields"]}
    assert types == {"id": "integer", "when": "datetime"}


@pytest.mark.parametrize(
    ("data", "filename", "code"),
    [
        (b"a,b\n1,2,3\n4\n", "ragged.csv", "bad-sample"),
        (b"PK\x03\x04not a workbook", "broken.xlsx", "bad-source"),
        (b"a,b\n", "header-only.csv", "empty-sample"),
        (b"", "empty.csv", "empty"),
    ],
)
def test_a_bad_sample_is_refused_on_the_sample_field(
    platform: Platform, data: bytes, filename: str, code: str
) -> None:
    with pytest.raises(SourceError) as refused:
        _infer(platform, data, filename)
    assert refused.value.extra["field"] == "sample" and refused.value.code == code
    assert list((platform.settings.var_dir / "work").iterdir()) == []


def test_an_oversized_sample_is_refused_before_it_is_read(tmp_path: Path) -> None:
    node = Platform.open(make_settings(tmp_path / "var", upload_max_bytes=1000))
    node.migrate()
    try:
        with pytest.raises(SourceError) as refused:
            _infer(node, b"a,b\n" + b"1,2\n" * 1000, "big.csv")
        assert refused.value.code == "too-large" and refused.value.extra["limit"] == 1000
        assert list((node.settings.var_dir / "work").iterdir()) == []
    finally:
        node.close()


def test_only_those_who_register_resources_read_samples(platform: Platform) -> None:
    with platform.factory.begin() as session:
        org = factories.make_org(session)
    consumer = Principal(kind="user", name="reader", organization_id=org.id,
                         roles=frozenset({"consumer"}))  # fmt: skip
    with pytest.raises(Forbidden), unit_of_work(platform.factory) as session:
        service.infer_sample(session, consumer, io.BytesIO(b"a\n1\n"), filename="a.csv")
    with platform.factory() as session:
        denied = session.scalars(
            select(audit.AuditRecord).where(audit.AuditRecord.action == "resource.create")
        ).all()
    assert [(r.actor, r.outcome) for r in denied] == [("user:reader", "denied")]
    with pytest.raises(Invalid), unit_of_work(platform.factory) as session:
        service.infer_sample(session, Principal.system(), io.BytesIO(b""), filename=None)


def test_headers_with_quotes_are_read_like_any_other(platform: Platform) -> None:
    text = 'owner\'s name,"a""b",ric\n' + "".join(
        f"林{n},{n},{person(n)['ric']}\n" for n in range(1, 6)
    )
    sample = _infer(platform, text.encode(), "q.csv")
    assert [(f["name"], f["type"]) for f in sample.descriptor["fields"]] == [
        ("owner's name", "string"), ('a"b', "integer"), ("ric", "string"),
    ]  # fmt: skip
    assert sample.descriptor["fields"][2]["format"] == "cn-ric"
