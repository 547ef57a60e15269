"""The linkage model: Chinese names by characters and pinyin, identity numbers, dates, Spark."""

from __future__ import annotations

import logging
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from minyun.subjects import linkage
from minyun.subjects.synth import person_sources

logging.getLogger("splink").setLevel(logging.WARNING)


def _records(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    tables, truth = person_sources(n, seed=seed)
    parts = []
    for code, table in tables.items():
        out = {
            "uid": pc.binary_join_element_wise(pa.array([code] * table.num_rows), table["id"], "|")
        }
        for c in ("ric", "name", "sex", "birth_date", "phone", "address"):
            out[c] = table[c] if c in table.column_names else pa.nulls(table.num_rows, pa.string())
        parts.append(pa.table(out).cast(pa.schema([(k, pa.string()) for k in out])))
    expected = pa.table(
        {
            "uid": pc.binary_join_element_wise(truth["resource"], truth["row_key"], "|"),
            "true_id": truth["person_id"],
        }
    )
    return pa.concat_tables(parts), expected


def test_features_compare_names_by_pinyin_and_identity_numbers_by_sorted_digits() -> None:
    records = pa.table(
        {
            "uid": ["a", "b"],
            "name": ["陈伟", "陈玮"],
            "ric": ["350102199003071234", "350102199003072134"],
            "birth_date": ["1990-03-07", "1990-07-03"],
            "address": ["福州市鼓楼区人民路1号", None],
        }
    )
    f = linkage.features(records, "person").to_pylist()
    assert f[0]["name_pinyin"] == f[1]["name_pinyin"] == "chen wei"
    assert f[0]["name_chars"] == ["陈", "伟"]
    assert f[0]["ric_sorted"] == f[1]["ric_sorted"] and f[0]["ric17"] != f[1]["ric17"]
    assert f[0]["dob_swapped"] == f[1]["birth_date"] == "1990-07-03"
    assert f[0]["addr_county"] == "福州市鼓楼区" and f[1]["addr_county"] is None


def test_the_model_explains_a_pair_by_its_comparisons() -> None:
    from tests.subjects.kit import _trained_person_model

    model = linkage.Model("person", _trained_person_model())
    left = {"uid": "x", "ric": "350102199003071234", "name": "陈伟", "sex": "M",
            "birth_date": "1990-03-07", "phone": "13800000000", "address": "福州市鼓楼区人民路1号"}  # fmt: skip
    right = dict(left, uid="y", name="陈玮", birth_date="1990-07-03", phone=None)
    parts = {p["comparison"]: p for p in linkage.explain(model, left, right)}
    assert parts["ric"]["match_weight"] > 5  # the identity number agrees
    assert "pinyin" in parts["name"]["level"]
    assert "swapped" in parts["birth_date"]["level"]
    assert parts["phone"]["match_weight"] == 0  # missing: no evidence either way
    total = sum(p["match_weight"] for k, p in parts.items() if k != "total")
    assert total == pytest.approx(parts["total"]["match_weight"], abs=0.01)


@pytest.mark.parametrize("kind", ["person", "enterprise"])
def test_an_exact_identity_number_alone_links_two_rows(kind: str) -> None:
    """Most departments' rows hold only the number (or credit code): agreeing on it exactly
    links them, although random sampling counted the same-subject pairs into its u."""
    from tests.subjects.kit import _trained_enterprise_model, _trained_person_model

    trained = _trained_person_model() if kind == "person" else _trained_enterprise_model()
    model = linkage.Model(kind, trained)  # type: ignore[arg-type]
    column = linkage.IDENTITY[kind]  # type: ignore[index]
    number = "350102199003071234" if kind == "person" else "91350100M000100Y43"
    parts = {p["comparison"]: p for p in linkage.explain(model, {"uid": "a", column: number},
                                                          {"uid": "b", column: number})}  # fmt: skip
    weight = parts["total"]["match_weight"]
    probability = 2**weight / (1 + 2**weight)
    assert probability >= linkage.LINK_THRESHOLD, parts
    assert parts[column]["match_weight"] > -parts["prior"]["match_weight"] + 4


def test_stable_ids_keep_growing_clusters_and_record_merges_and_splits() -> None:
    clusters = pa.table({"uid": list("abcdef"), "cluster_id": ["1", "1", "1", "2", "3", "3"]})
    previous = pa.table({"uid": list("abde"), "subject_id": ["P1", "P1", "P2", "P3"]})
    ids, changes = linkage.assign_ids(clusters, previous, prefix="P", next_number=7)
    got = dict(zip(ids["uid"].to_pylist(), ids["subject_id"].to_pylist(), strict=True))
    assert got == {"a": "P1", "b": "P1", "c": "P1", "d": "P2", "e": "P3", "f": "P3"}
    kinds = {(c["kind"], c["subject_id"]) for c in changes.to_pylist()}
    assert kinds == {("grown", "P1"), ("grown", "P3")}
    # P1 and P2 now one cluster: P1 (more rows) keeps its id, P2 is merged into it.
    merged = pa.table({"uid": list("abd"), "cluster_id": ["9", "9", "9"]})
    ids, changes = linkage.assign_ids(merged, previous, prefix="P", next_number=7)
    assert set(ids["subject_id"].to_pylist()) == {"P1"}
    assert changes.to_pylist() == [
        {"kind": "merged", "subject_id": "P1", "other_id": "P2", "rows": 1}
    ]
    # P1 split in two: the larger part keeps P1, the other gets a new id.
    split = pa.table({"uid": list("ab"), "cluster_id": ["4", "5"]})
    ids, changes = linkage.assign_ids(split, previous.slice(0, 2), prefix="P", next_number=7)
    assert sorted(ids["subject_id"].to_pylist()) == ["P0000000007", "P1"]
    assert changes.to_pylist()[0]["kind"] == "split"


def test_a_split_leaves_the_id_with_the_larger_part() -> None:
    previous = pa.table({"uid": list("abcxy"), "subject_id": ["P1", "P1", "P1", "P2", "P2"]})
    # P1's row c now belongs with P2: P1 keeps its two other rows, c is split off into P2.
    clusters = pa.table({"uid": list("abcxy"), "cluster_id": ["1", "1", "2", "2", "2"]})
    ids, changes = linkage.assign_ids(clusters, previous, prefix="P", next_number=3)
    got = dict(zip(ids["uid"].to_pylist(), ids["subject_id"].to_pylist(), strict=True))
    assert got == {"a": "P1", "b": "P1", "c": "P2", "x": "P2", "y": "P2"}
    assert changes.to_pylist() == [
        {"kind": "split", "subject_id": "P2", "other_id": "P1", "rows": 1}
    ]
    # P1 split in halves, one of them joining P2 (larger there): P1 lives on in the other half.
    clusters = pa.table({"uid": list("abcxy"), "cluster_id": ["1", "2", "2", "1", "1"]})
    previous = pa.table({"uid": list("abxy"), "subject_id": ["P1", "P1", "P2", "P2"]})
    ids, changes = linkage.assign_ids(clusters, previous, prefix="P", next_number=4)
    got = dict(zip(ids["uid"].to_pylist(), ids["subject_id"].to_pylist(), strict=True))
    assert got == {"a": "P2", "b": "P1", "c": "P1", "x": "P2", "y": "P2"}
    assert {(c["kind"], c["subject_id"], c["other_id"]) for c in changes.to_pylist()} == {
        ("split", "P2", "P1"),
        ("grown", "P1", None),
    }
    # A tie: the part holding the subject's smallest row key keeps the id.
    clusters = pa.table({"uid": list("ab"), "cluster_id": ["2", "1"]})
    ids, _ = linkage.assign_ids(clusters, previous.slice(0, 2), prefix="P", next_number=4)
    got = dict(zip(ids["uid"].to_pylist(), ids["subject_id"].to_pylist(), strict=True))
    assert got == {"a": "P1", "b": "P0000000004"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs the Java runtime")
def test_spark_gives_the_same_clusters_as_duckdb() -> None:
    # Small on purpose: Spark's cost here is its session and Splink's many stages, not rows
    # (about 50 s on 2 shared cores); the bench compares the engines on 300 persons each run.
    from tests.subjects.kit import _trained_person_model

    records, _ = _records(40, seed=9)
    frame = linkage.features(records, "person")
    model = linkage.Model("person", _trained_person_model())

    def partition(table: pa.Table) -> set[frozenset[str]]:
        groups: dict[object, set[str]] = {}
        for uid, c in zip(table["uid"].to_pylist(), table["cluster_id"].to_pylist(), strict=True):
            groups.setdefault(c, set()).add(uid)
        return {frozenset(g) for g in groups.values()}

    duck = linkage.pairwise_scores(frame, model, engine="duckdb")
    spark = linkage.pairwise_scores(frame, model, engine="spark")
    assert max(len(g) for g in partition(duck.clusters)) >= 3  # real clusters, not singletons
    assert partition(duck.clusters) == partition(spark.clusters)
    assert duck.pairs.num_rows == spark.pairs.num_rows


def test_rows_without_a_name_keep_their_place_among_the_features() -> None:
    from minyun.subjects.linkage import _pinyin_and_chars

    pinyin, chars = _pinyin_and_chars(pa.array(["林小闽", None, "张三", "李"]))
    assert pinyin.to_pylist() == ["lin xiao min", None, "zhang san", "li"]
    assert chars.to_pylist() == [["林", "小", "闽"], None, ["张", "三"], ["李"]]
