"""The resolution job: governed reads, linkage, stable ids, incremental runs, the links file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.subjects import linkage, service
from minyun.subjects.models import SubjectChange, SubjectLink
from tests.subjects.kit import load_population

SYSTEM = Principal.system()
N = 1500


def _links(node: Platform) -> pa.Table:
    with unit_of_work(node.factory) as session:
        return service.links_table(session, SYSTEM, kind="person")


def _truth(truth: pa.Table) -> pa.Table:
    return pa.table(
        {
            "uid": pc.binary_join_element_wise(truth["resource"], truth["row_key"], "|"),
            "true_id": truth["person_id"],
        }
    )


def _predicted(links: pa.Table) -> pa.Table:
    return pa.table(
        {
            "uid": pc.binary_join_element_wise(links["resource"], links["row_key"], "|"),
            "cluster_id": links["subject_id"],
        }
    )


def test_a_full_run_links_the_noisy_sources_with_pairwise_f1_over_0995(
    node: Platform, tmp_path: Path
) -> None:
    tables, truth, _ = load_population(node, tmp_path, N, model=False)
    steps: list[str] = []
    with unit_of_work(node.factory) as session:
        run = service.resolve(
            session, node.lake, SYSTEM, kind="person",
            progress=lambda step, done, total: steps.append(step),
        )  # fmt: skip
        assert run.mode == "full"
        stats = dict(run.stats)
    assert {"read", "features", "link", "write"} <= set(steps)
    assert stats["rows"] == truth.num_rows and stats["resources"] == 5
    links = _links(node)
    assert links.column_names == ["resource", "row_key", "subject_id"]
    assert links.num_rows == truth.num_rows
    metrics = linkage.pairwise_metrics(_predicted(links), _truth(truth))
    assert metrics["f1"] >= 0.995, metrics
    with node.factory() as session:
        reads = session.scalars(
            select(AuditRecord.object_id).where(AuditRecord.action == "resource.read")
        ).all()
        assert set(tables) <= set(reads)  # every source read through its plan, audited
        assert session.scalars(
            select(AuditRecord).where(AuditRecord.action == "subjects.resolve")
        ).first()


def test_ids_stay_stable_and_an_incremental_run_links_only_new_rows(
    node: Platform, tmp_path: Path
) -> None:
    tables, truth, stewards = load_population(node, tmp_path, 300)
    with unit_of_work(node.factory) as session:
        service.resolve(session, node.lake, SYSTEM, kind="person")
    before = _links(node)
    with unit_of_work(node.factory) as session:
        again = service.resolve(session, node.lake, SYSTEM, kind="person")
        assert again.mode == "unchanged"
    # A new row about a known person in the health records: it joins that person's subject.
    from minyun.ingest.models import LoadMode
    from tests.ingest.loadkit import load
    from tests.subjects.kit import write_csv

    hukou = tables["gat_hjrk"].slice(0, 1).to_pylist()[0]
    row = {
        "id": "WJW_JMJK-NEW", "ric": hukou["ric"], "name": hukou["name"], "sex": hukou["sex"],
        "birth_date": hukou["birth_date"], "phone": "13900000000", "address": hukou["address"],
    }  # fmt: skip
    added = pa.Table.from_pylist([row], schema=tables["wjw_jmjk"].schema)
    job = load(node, stewards["wjw_jmjk"], "wjw_jmjk", write_csv(added, tmp_path / "new.csv"),
               mode=LoadMode.APPEND)  # fmt: skip
    assert job.state == "succeeded", job.error
    with unit_of_work(node.factory) as session:
        inc = service.resolve(session, node.lake, SYSTEM, kind="person")
        assert inc.mode == "incremental"
        assert inc.stats["changed_rows"] == 1 and inc.stats["links_written"] == 1
    after = _links(node)
    old = dict(zip(
        pc.binary_join_element_wise(before["resource"], before["row_key"], "|").to_pylist(),
        before["subject_id"].to_pylist(), strict=True))  # fmt: skip
    new = dict(zip(
        pc.binary_join_element_wise(after["resource"], after["row_key"], "|").to_pylist(),
        after["subject_id"].to_pylist(), strict=True))  # fmt: skip
    assert all(new[uid] == sid for uid, sid in old.items())  # every id kept
    assert new["wjw_jmjk|WJW_JMJK-NEW"] == old[f"gat_hjrk|{hukou['id']}"]
    with node.factory() as session:
        grown = session.scalars(select(SubjectChange).where(SubjectChange.kind == "grown")).all()
        assert [c.subject_id for c in grown] == [old[f"gat_hjrk|{hukou['id']}"]]
        assert session.query(SubjectLink).count() == truth.num_rows + 1


def test_only_admins_resolve(node: Platform, tmp_path: Path) -> None:
    clerk = Principal(kind="user", name="clerk", organization_id=1, roles=frozenset({"consumer"}))
    with pytest.raises(Forbidden), unit_of_work(node.factory) as session:
        service.resolve(session, node.lake, clerk, kind="person")


@pytest.mark.postgres
def test_a_run_on_postgresql_writes_every_link(pg_node: Platform, tmp_path: Path) -> None:
    _, truth, _ = load_population(pg_node, tmp_path, 120)
    with unit_of_work(pg_node.factory) as session:
        run = service.resolve(session, pg_node.lake, SYSTEM, kind="person")
        assert run.stats["links_written"] == truth.num_rows
    links = _links(pg_node)
    assert links.num_rows == truth.num_rows
    metrics = linkage.pairwise_metrics(_predicted(links), _truth(truth))
    assert metrics["f1"] >= 0.99, metrics


def test_a_kind_no_resource_links_is_an_empty_run(node: Platform) -> None:
    with unit_of_work(node.factory) as session:
        run = service.resolve(session, node.lake, SYSTEM, kind="enterprise")
        assert run.mode == "empty" and run.stats["rows"] == 0


def test_a_changed_row_that_now_belongs_elsewhere_is_split_off_and_only_it_is_relinked(
    node: Platform, tmp_path: Path
) -> None:
    from minyun.catalog.models import LoadMode
    from tests.ingest.loadkit import load
    from tests.subjects.kit import write_csv

    tables, truth, stewards = load_population(node, tmp_path, 300)
    with unit_of_work(node.factory) as session:
        first = service.resolve(session, node.lake, SYSTEM, kind="person")
        assert first.stats["linked_rows"] == truth.num_rows
    before = _links(node)
    subject = dict(zip(
        pc.binary_join_element_wise(before["resource"], before["row_key"], "|").to_pylist(),
        before["subject_id"].to_pylist(), strict=True))  # fmt: skip
    sizes = pc.value_counts(before["subject_id"]).to_pylist()
    big = {s["values"] for s in sizes if s["counts"] >= 3}
    # A health record of a person with at least two other rows now holds another person's data.
    health = tables["wjw_jmjk"].to_pylist()
    row = next(r for r in health if r["ric"] and subject[f"wjw_jmjk|{r['id']}"] in big)
    old_id = subject[f"wjw_jmjk|{row['id']}"]
    other = next(
        r for r in tables["gat_hjrk"].to_pylist() if subject[f"gat_hjrk|{r['id']}"] not in {old_id}
    )
    new_id = subject[f"gat_hjrk|{other['id']}"]
    changed = dict(row, ric=other["ric"], name=other["name"], sex=other["sex"],
                   birth_date=other["birth_date"], address=other["address"], phone=None)  # fmt: skip
    upsert = pa.Table.from_pylist([changed], schema=tables["wjw_jmjk"].schema)
    job = load(node, stewards["wjw_jmjk"], "wjw_jmjk", write_csv(upsert, tmp_path / "up.csv"),
               mode=LoadMode.UPSERT)  # fmt: skip
    assert job.state == "succeeded", job.error
    with unit_of_work(node.factory) as session:
        inc = service.resolve(session, node.lake, SYSTEM, kind="person")
        assert inc.mode == "incremental"
        # Only the changed row was linked and written; every other row kept its link untouched.
        assert inc.stats["changed_rows"] == inc.stats["linked_rows"] == 1
        assert inc.stats["links_written"] == 1 and inc.stats["split"] == 1
        run_id = inc.id
    after = _links(node)
    now = dict(zip(
        pc.binary_join_element_wise(after["resource"], after["row_key"], "|").to_pylist(),
        after["subject_id"].to_pylist(), strict=True))  # fmt: skip
    uid = f"wjw_jmjk|{row['id']}"
    assert now[uid] == new_id  # the row went to the person it is now about
    assert all(now[u] == s for u, s in subject.items() if u != uid)  # every other id kept
    assert old_id in now.values()  # the larger part kept the old id
    with node.factory() as session:
        written = session.scalars(select(SubjectLink).where(SubjectLink.run_id == run_id)).all()
        assert [(w.resource, w.row_key) for w in written] == [("wjw_jmjk", row["id"])]
        split = session.scalars(select(SubjectChange).where(SubjectChange.run_id == run_id)).all()
        assert [(c.kind, c.subject_id, c.other_id, c.rows) for c in split] == [
            ("split", new_id, old_id, 1)
        ]


def _link_indexes(node: Platform) -> set[str]:
    from sqlalchemy import inspect

    return {i["name"] for i in inspect(node.engine).get_indexes("subject_links")}


def test_a_large_write_on_sqlite_rebuilds_the_link_indexes_and_a_failed_one_keeps_them(
    node: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _link_indexes(node)
    assert "ix_subject_links_subject" in before
    monkeypatch.setattr(service, "_REINDEX_FROM", 2)
    rows = pa.table({"resource": ["r", "r", "s"], "row_key": ["1", "2", "1"],
                     "subject_id": ["P1", "P1", "P2"], "row_hash": ["h1", "h2", "h3"],
                     "lake_version": [0, 0, 0], "ident": ["i1", "i1", None]})  # fmt: skip
    with unit_of_work(node.factory) as session:
        service._insert_links(session, rows, "person", 1)
    assert _link_indexes(node) == before
    with node.factory() as session:
        found = session.scalars(select(SubjectLink).where(SubjectLink.subject_id == "P1")).all()
    assert sorted(link.row_key for link in found) == ["1", "2"]
    # The same keys again: the unique (resource, row_key) refuses them, the drop rolls back.
    with pytest.raises(Exception, match="UNIQUE"), unit_of_work(node.factory) as session:
        service._insert_links(session, rows, "person", 2)
    assert _link_indexes(node) == before
    with node.factory() as session:
        assert len(session.scalars(select(SubjectLink)).all()) == 3
