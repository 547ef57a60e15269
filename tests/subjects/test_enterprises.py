"""One file per enterprise (一企一档): the synthetic enterprise population and its linkage."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pypinyin import lazy_pinyin

from minyun.core.identifiers import is_valid_ric, is_valid_uscc
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.tableschema import parse_schema
from minyun.core.uow import unit_of_work
from minyun.subjects import linkage, service
from minyun.subjects.synth import (
    ENTERPRISE_SOURCES,
    TRADE_HOMOPHONES,
    enterprise_schema,
    enterprise_sources,
)
from tests.subjects.kit import load_enterprises

logging.getLogger("splink").setLevel(logging.WARNING)
SYSTEM = Principal.system()
N = 2000


def _records(tables: dict[str, pa.Table]) -> pa.Table:
    parts = []
    for code, table in tables.items():
        out = {
            "uid": pc.binary_join_element_wise(pa.array([code] * table.num_rows), table["id"], "|")
        }
        for c in service.COLUMNS["enterprise"]:
            out[c] = table[c] if c in table.column_names else pa.nulls(table.num_rows, pa.string())
        parts.append(pa.table(out).cast(pa.schema([(k, pa.string()) for k in out])))
    return pa.concat_tables(parts)


def _truth(truth: pa.Table) -> pa.Table:
    return pa.table(
        {
            "uid": pc.binary_join_element_wise(truth["resource"], truth["row_key"], "|"),
            "true_id": truth["enterprise_id"],
        }
    )


def test_trade_name_homophones_sound_the_same() -> None:
    assert all(lazy_pinyin(a) == lazy_pinyin(b) for a, b in TRADE_HOMOPHONES.items())


def test_enterprise_sources_carry_the_planted_noise_and_the_truth() -> None:
    tables, truth = enterprise_sources(N, seed=7)
    assert truth.num_rows == sum(t.num_rows for t in tables.values())
    assert "uscc" not in tables["sthj_pwxk"].column_names  # one source with no credit code
    registry = tables["scjg_qydj"]
    assert registry.num_rows == N  # the registry holds every enterprise once
    taxes = tables["sw_nsrdj"]
    uscc = [u for u in taxes["uscc"].to_pylist() if u]
    assert 0 < sum(not is_valid_uscc(u) for u in uscc) < 0.1 * len(uscc)  # wrong check characters
    names = pa.concat_arrays([t["name"].combine_chunks() for t in tables.values()]).to_pylist()
    assert any("（" in n for n in names)  # the city in brackets: 恒晟餐饮（福州）有限公司
    assert any(n.endswith("有限责任公司") for n in names) and any(
        n.endswith("股份公司") for n in names
    )
    legal = [r for r in tables["sthj_pwxk"]["legal_person_ric"].to_pylist() if r]
    assert any(not is_valid_ric(r) for r in legal)  # a representative's wrong check digit
    dup = pc.value_counts(truth.filter(pc.equal(truth["resource"], "sw_nsrdj"))["enterprise_id"])
    assert max(c["counts"] for c in dup.to_pylist()) >= 2  # duplicates within a source
    addresses = registry["address"].to_pylist()
    assert all(a.endswith("号") for a in addresses)


def test_enterprise_schemas_mark_their_link_fields() -> None:
    for source in ENTERPRISE_SOURCES:
        schema = parse_schema(enterprise_schema(source))
        assert schema.subject_kind == "enterprise"
        assert set(schema.links) == {f"enterprise.{f}" for f in source.fields}


def test_features_compare_enterprise_names_by_their_core_and_addresses_by_division() -> None:
    records = pa.table(
        {
            "uid": ["a", "b", "c"],
            "name": ["福州恒晟餐饮有限责任公司", "恒晟餐饮（福州）有限公司", "恒晟餐饮股份公司"],
            "address": ["福州市鼓楼区工业路8号", "鼓楼区工业路8号", "厦门市思明区工业路8号"],
        }
    )
    f = linkage.features(records, "enterprise").to_pylist()
    assert {r["name_core"] for r in f} == {"恒晟餐饮"}
    assert f[0]["name_pinyin"] == "heng cheng can yin"
    assert f[0]["addr_county"] == f[1]["addr_county"] == "350102"
    assert f[0]["addr_place"] == f[1]["addr_place"] != f[2]["addr_place"]


def test_the_enterprise_model_links_the_noisy_sources_with_pairwise_f1_over_099() -> None:
    tables, truth = enterprise_sources(N, seed=5)
    frame = linkage.features(_records(tables), "enterprise")
    model = linkage.train(frame, "enterprise")
    scored = linkage.pairwise_scores(frame, model)
    metrics = linkage.pairwise_metrics(scored.clusters, _truth(truth))
    assert metrics["precision"] >= 0.995, metrics
    assert metrics["recall"] >= 0.99, metrics
    assert metrics["f1"] >= 0.99, metrics


def test_the_enterprise_model_explains_a_pair_without_a_credit_code() -> None:
    from tests.subjects.kit import _trained_enterprise_model

    model = linkage.Model("enterprise", _trained_enterprise_model())
    left = {"uid": "x", "uscc": "91350102MA2XGUM50L", "name": "福州恒晟餐饮有限责任公司",
            "address": "福州市鼓楼区工业路8号", "legal_person_ric": "350102199003071234"}  # fmt: skip
    right = dict(
        left, uid="y", uscc=None, name="恒晟餐饮（福州）有限公司", address="鼓楼区工业路8号"
    )
    parts = {p["comparison"]: p for p in linkage.explain(model, left, right)}
    assert parts["uscc"]["match_weight"] == 0  # missing: no evidence either way
    assert "core" in parts["name"]["level"]
    assert parts["legal_person_ric"]["match_weight"] > 5
    assert parts["address"]["match_weight"] > 0
    assert parts["total"]["match_weight"] > 0


def test_a_full_enterprise_run_through_the_lake_gives_stable_e_ids(
    node: Platform, tmp_path: Path
) -> None:
    _, truth, _ = load_enterprises(node, tmp_path, 600, model=False)
    with unit_of_work(node.factory) as session:
        run = service.resolve(session, node.lake, SYSTEM, kind="enterprise")
        assert run.mode == "full" and run.stats["resources"] == len(ENTERPRISE_SOURCES)
    with unit_of_work(node.factory) as session:
        links = service.links_table(session, SYSTEM, kind="enterprise")
    assert links.num_rows == truth.num_rows
    assert all(s.startswith("E") for s in links["subject_id"].to_pylist())
    predicted = pa.table(
        {
            "uid": pc.binary_join_element_wise(links["resource"], links["row_key"], "|"),
            "cluster_id": links["subject_id"],
        }
    )
    metrics = linkage.pairwise_metrics(predicted, _truth(truth))
    assert metrics["f1"] >= 0.99, metrics
    with unit_of_work(node.factory) as session:
        again = service.resolve(session, node.lake, SYSTEM, kind="enterprise")
        assert again.mode == "unchanged"


def test_the_demo_enterprise_resources_link_by_their_keys(node: Platform, tmp_path: Path) -> None:
    from minyun.demo.resources import RESOURCES, build_table
    from minyun.subjects.synth import EnterpriseNoise, EnterpriseSource
    from tests.ingest.loadkit import load
    from tests.subjects.kit import finished, make_source, seed_model, write_csv

    seed_model(node, "enterprise")

    linking = [r for r in RESOURCES if parse_schema(r.schema()).subject_kind == "enterprise"]
    assert {r.code for r in linking} >= {"amr-enterprise-registration", "eco-key-polluters"}
    loaded: dict[str, pa.Table] = {}
    for demo in linking:
        source = EnterpriseSource(demo.code, demo.name, demo.provider, 1.0, (), EnterpriseNoise())
        code, steward = make_source(node, source, demo.schema())
        table = build_table(demo)
        job = finished(node, load(node, steward, code, write_csv(table, tmp_path / f"{code}.csv")))
        assert job.state == "succeeded", job.error
        loaded[code] = table
    with unit_of_work(node.factory) as session:
        run = service.resolve(session, node.lake, SYSTEM, kind="enterprise")
        assert run.stats["resources"] == len(linking)
    with unit_of_work(node.factory) as session:
        links = service.links_table(session, SYSTEM, kind="enterprise")
    assert links.num_rows > 0
    # A credit code names one enterprise: every resource's row with it is in one subject.
    by_code: dict[str, set[str]] = {}
    keys = list(zip(links["resource"].to_pylist(), links["row_key"].to_pylist(), strict=True))
    for (_, key), subject in zip(keys, links["subject_id"].to_pylist(), strict=True):
        by_code.setdefault(key, set()).add(subject)
    assert all(len(subjects) == 1 for subjects in by_code.values())
    # ...and different codes are different enterprises (the demo's are all distinct).
    assert len(set(links["subject_id"].to_pylist())) == len(by_code)
    holders: dict[str, set[str]] = {}
    for resource, key in keys:
        holders.setdefault(key, set()).add(resource)
    assert sum(len(h) > 1 for h in holders.values()) > 100  # many held by several departments


def test_an_enterprise_file_shows_its_sources_and_their_conflicts_side_by_side(
    node: Platform, tmp_path: Path
) -> None:
    from minyun.subjects import files

    load_enterprises(node, tmp_path, 200)
    with unit_of_work(node.factory) as session:
        service.resolve(session, node.lake, SYSTEM, kind="enterprise")
    with unit_of_work(node.factory) as session:
        links = service.links_table(session, SYSTEM, kind="enterprise")
    holders: dict[str, set[str]] = {}
    for resource, subject in zip(
        links["resource"].to_pylist(), links["subject_id"].to_pylist(), strict=True
    ):
        holders.setdefault(subject, set()).add(resource)
    richest = max(holders, key=lambda s: (len(holders[s]), s))
    with unit_of_work(node.factory) as session:
        found = files.subject_file(session, node.lake, SYSTEM, richest)
    assert found.kind == "enterprise" and len(found.departments) >= 4
    assert all(r.department and r.lake_version >= 0 for r in found.records)
    for conflict in found.conflicts:  # each differing value with the sources holding it
        assert len(conflict.values) >= 2
        assert all(records for _, records in conflict.values)
    names = {r.values.get("name") for r in found.records} - {None}
    assert (len(names) > 1) == ("name" in {c.link for c in found.conflicts})
