"""The query service on SQLite and PostgreSQL: access, paging, versions, cursors, audit."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.catalog.models import ResourceStatus
from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.lake import Lake
from minyun.core.security import Principal
from minyun.query.service import RowsPage, query_rows
from tests.factories import make_org
from tests.query.data import ADMIN, add_resource, people, steward


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def _reads(session: Session) -> list[AuditRecord]:
    query = select(AuditRecord).where(AuditRecord.action == "resource.read")
    return list(session.scalars(query.order_by(AuditRecord.seq)))


def _all_pages(
    session: Session, lake: Lake, actor: Principal, code: str, **options: object
) -> list[RowsPage]:
    pages = [query_rows(session, lake, actor, code, **options)]  # type: ignore[arg-type]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 500, "paging does not end"
        pages.append(
            query_rows(session, lake, actor, code, cursor=pages[-1].next_cursor, **options)  # type: ignore[arg-type]
        )
    return pages


def _expected(table: pa.Table, where: str, order: str) -> list[int]:
    con = duckdb.connect()
    con.register("t", table)
    return [r[0] for r in con.sql(f"SELECT id FROM t WHERE {where} ORDER BY {order}").fetchall()]


def test_provider_staff_page_through_every_row_once_in_order(session: Session, lake: Lake) -> None:
    org = make_org(session)
    table = people(250)
    add_resource(
        session, lake, provider_id=org.id, code="ppl", versions=[table], primary_key=["id"]
    )
    pages = _all_pages(
        session, lake, steward(org.id), "ppl",
        fields="id,name", filter="city != '厦门市' or city is null", sort="-age,born", limit=7,
    )  # fmt: skip
    ids = [i for page in pages for i in page.table.column("id").to_pylist()]
    assert ids == _expected(
        table,
        "city <> '厦门市' OR city IS NULL",
        "age DESC NULLS LAST, born ASC NULLS LAST, id",
    )
    assert len(ids) == len(set(ids)) and len(pages) == -(-len(ids) // 7)
    assert pages[0].table.column_names == ["id", "name"] and pages[-1].version == 0
    reads = _reads(session)
    assert len(reads) == len(pages) and all(r.outcome == "success" for r in reads)
    assert reads[0].record_count == 7 and reads[0].record_keys == [str(i) for i in ids[:7]]
    assert "filter=city != '厦门市'" in (reads[0].detail or "")


def test_another_organisations_steward_is_refused_and_admin_reads(
    session: Session, lake: Lake
) -> None:
    provider, other = make_org(session), make_org(session)
    add_resource(
        session,
        lake,
        provider_id=provider.id,
        code="ppl",
        versions=[people(20)],
        primary_key=["id"],
    )
    with pytest.raises(Forbidden) as refused:
        query_rows(session, lake, steward(other.id), "ppl", purpose="核查")
    pending = refused.value.audit
    assert pending.action == "resource.read" and pending.target == "ppl"
    assert pending.outcome == "denied" and pending.purpose == "核查"
    assert _reads(session) == []
    page = query_rows(session, lake, ADMIN, "ppl", limit=200)
    assert page.table.num_rows == 20 and page.next_cursor is None
    with pytest.raises(Unauthenticated):
        query_rows(session, lake, Principal.anonymous(), "ppl")


def test_drafts_are_hidden_from_others_as_if_missing(session: Session, lake: Lake) -> None:
    provider, other = make_org(session), make_org(session)
    add_resource(
        session, lake, provider_id=provider.id, code="draft", versions=[people(3)],
        primary_key=["id"], status=ResourceStatus.DRAFT,
    )  # fmt: skip
    with pytest.raises(NotFound) as hidden:
        query_rows(session, lake, steward(other.id), "draft")
    with pytest.raises(NotFound) as missing:
        query_rows(session, lake, steward(other.id), "nothing-here")
    assert str(hidden.value).replace("draft", "X") == str(missing.value).replace(
        "nothing-here", "X"
    )
    assert query_rows(session, lake, steward(provider.id), "draft").table.num_rows == 3


def test_a_cursor_keeps_reading_its_version(session: Session, lake: Lake) -> None:
    org = make_org(session)
    resource = add_resource(
        session, lake, provider_id=org.id, code="ppl", versions=[people(30)], primary_key=["id"]
    )
    actor = steward(org.id)
    first = query_rows(session, lake, actor, "ppl", limit=10)
    write_deltalake(lake.table_uri("ppl"), people(5, first_id=1000), mode="overwrite")
    resource.lake_version = 1
    second = query_rows(session, lake, actor, "ppl", limit=10, cursor=first.next_cursor)
    assert second.version == 0 and second.table.column("id").to_pylist() == list(range(11, 21))
    newest = query_rows(session, lake, actor, "ppl")
    assert newest.version == 1 and newest.table.num_rows == 5
    old = query_rows(session, lake, actor, "ppl", version=0, limit=1000)
    assert old.table.num_rows == 30
    with pytest.raises(NotFound, match="no version 2"):
        query_rows(session, lake, actor, "ppl", version=2)
    with pytest.raises(Invalid) as mismatch:
        query_rows(session, lake, actor, "ppl", version=1, cursor=first.next_cursor)
    assert mismatch.value.extra["field"] == "version"


def test_forged_or_foreign_cursors_are_refused(session: Session, lake: Lake) -> None:
    org = make_org(session)
    add_resource(
        session, lake, provider_id=org.id, code="ppl", versions=[people(30)], primary_key=["id"]
    )
    actor = steward(org.id)
    cursor = query_rows(session, lake, actor, "ppl", limit=5, filter="age > 20").next_cursor
    assert cursor is not None
    body, _, mac = cursor.partition(".")
    for bad in [body + "." + mac[::-1], "x" + cursor, "garbage", "a.b", "é.é", cursor + "=" * 9000]:
        with pytest.raises(Invalid) as refused:
            query_rows(session, lake, actor, "ppl", limit=5, filter="age > 20", cursor=bad)
        assert refused.value.extra["field"] == "cursor"
    with pytest.raises(Invalid, match="another query"):
        query_rows(session, lake, actor, "ppl", limit=5, filter="age > 21", cursor=cursor)


def test_a_table_without_primary_key_pages_by_offset(session: Session, lake: Lake) -> None:
    org = make_org(session)
    table = people(40)
    add_resource(
        session, lake, provider_id=org.id, code="nokey", versions=[table], primary_key=None
    )
    pages = _all_pages(session, lake, steward(org.id), "nokey", limit=6, sort="city")
    ids = sorted(i for page in pages for i in page.table.column("id").to_pylist())
    assert ids == list(range(1, 41)) and len(pages) == 7
    assert all(r.record_keys is None for r in _reads(session))


def test_bad_options_are_invalid_and_nothing_is_audited(session: Session, lake: Lake) -> None:
    org = make_org(session)
    add_resource(
        session, lake, provider_id=org.id, code="ppl", versions=[people(3)], primary_key=["id"]
    )
    actor = steward(org.id)
    cases = [
        ({"filter": "1=1; DROP TABLE x"}, "filter"),
        ({"filter": "name = 'a' OR '1'='1'"}, "filter"),
        ({"fields": "id,password"}, "fields"),
        ({"sort": "-nope"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
    ]
    for options, field in cases:
        with pytest.raises(Invalid) as refused:
            query_rows(session, lake, actor, "ppl", **options)  # type: ignore[arg-type]
        assert refused.value.extra["field"] == field
    assert _reads(session) == []


def test_more_than_a_hundred_rows_are_counted_not_listed(session: Session, lake: Lake) -> None:
    org = make_org(session)
    add_resource(
        session, lake, provider_id=org.id, code="ppl", versions=[people(150)], primary_key=["id"]
    )
    page = query_rows(session, lake, steward(org.id), "ppl", limit=150, purpose="统计")
    (read,) = _reads(session)
    assert page.next_cursor is None
    assert read.record_count == 150 and read.record_keys is None and read.purpose == "统计"
