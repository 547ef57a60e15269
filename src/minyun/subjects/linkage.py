"""The linkage model: features, Splink settings per subject kind, training, prediction, clusters.

Splink runs on its own in-memory DuckDB connection (or a Spark session) over Arrow tables
handed to it; the rows come from the lake through `core` readers and access plans
(`subjects.service`), never from a table opened here.

DuckDB's string similarities work on UTF-8 bytes (伟 and 玮 score 0), so Chinese names are
compared by characters (a list of them) and by toneless pinyin (`pypinyin`), computed once
per distinct name. Identity numbers are compared whole, by their first 17 characters (a wrong
check digit) and by their sorted digits (a transposition); birth dates also with day and
month exchanged; addresses by their division (city and county). Enterprises have a model of
their own: names by their core (no city, no company form: 福州恒晟餐饮有限责任公司 and
恒晟餐饮（福州）有限公司 are both 恒晟餐饮), credit codes like identity numbers (GB 32100
check character, transpositions), the legal representative's identity number, and
addresses by their county's GB/T 2260 code. Every comparison is written so that the same
SQL runs on DuckDB and on Spark.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pypinyin import lazy_pinyin
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink import comparison_level_library as cll
from splink import comparison_library as cl

__all__ = [
    "LINK_THRESHOLD",
    "REVIEW_THRESHOLD",
    "Engine",
    "Model",
    "Scored",
    "features",
    "pairwise_scores",
    "train",
]

Engine = Literal["duckdb", "spark"]
Kind = Literal["person", "enterprise"]
# A pair at or above LINK_THRESHOLD (match probability) is one subject; one between the two
# thresholds waits in the stewards' review queue.
LINK_THRESHOLD = 0.95
REVIEW_THRESHOLD = 0.5
_COUNTY = re.compile(r"^(?P<county>.+?市.*?[区县市])")


# --------------------------------------------------------------------------- features


def features(records: pa.Table, kind: Kind) -> pa.Table:
    """The columns the model compares, from records with `uid` and the link kinds' columns
    (`ric`, `name`, `birth_date`, `sex`, `phone`, `address` for persons; `uscc`, `name`,
    `address`, `legal_person_ric` for enterprises). Missing columns are null."""
    n = records.num_rows

    def col(name: str) -> pa.Array:
        if name in records.column_names:
            return records[name].combine_chunks()
        return pa.nulls(n, pa.string())

    out: dict[str, pa.Array] = {"uid": col("uid")}
    name = _clean(col("name"))
    address = _clean(col("address"))
    out["name"] = name
    if kind == "person":
        pinyin, chars = _pinyin_and_chars(name)
        out["name_pinyin"] = pinyin
        out["name_chars"] = chars
        out["address"] = address
        county = pc.extract_regex(pc.fill_null(address, ""), _COUNTY.pattern).field("county")
        out["addr_county"] = _clean(pc.if_else(pc.is_valid(address), county, None))
        ric = pc.utf8_upper(_clean(col("ric")))
        out["ric"] = ric
        out["ric17"] = pc.utf8_slice_codeunits(ric, 0, 17)
        out["ric_sorted"] = _sorted_chars(ric)
        out["surname"] = pc.utf8_slice_codeunits(name, 0, 1)
        born, swapped = _dates(
            records["birth_date"] if "birth_date" in records.column_names else None, n
        )
        out["birth_date"] = born
        out["dob_swapped"] = swapped
        out["sex"] = _clean(col("sex"))
        out["phone"] = _clean(col("phone"))
    else:
        core = _name_core(name)
        pinyin, chars = _pinyin_and_chars(core)
        out["name_core"] = core
        out["name_pinyin"] = pinyin
        out["name_chars"] = chars
        out["address"] = address
        division, place = _division_and_place(address)
        out["addr_county"] = division
        out["addr_place"] = place
        uscc = pc.utf8_upper(_clean(col("uscc")))
        out["uscc"] = uscc
        out["uscc17"] = pc.utf8_slice_codeunits(uscc, 0, 17)
        out["uscc_sorted"] = _sorted_chars(uscc)
        legal = pc.utf8_upper(_clean(col("legal_person_ric")))
        out["legal_person_ric"] = legal
        out["legal17"] = pc.utf8_slice_codeunits(legal, 0, 17)
    return pa.table(out)


@functools.cache
def _divisions() -> tuple[list[str], dict[str, str]]:
    """The city names (福州市), and county names with and without their city → county code."""
    text = resources.files("minyun.core").joinpath("data/divisions.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    cities = {r["code"]: r["name"] for r in rows if r["level"] == "city"}
    counties = [r for r in rows if r["level"] == "county"]
    short: dict[str, list[str]] = {}
    for r in counties:
        short.setdefault(r["name"], []).append(r["code"])
    codes = {cities.get(r["parent_code"], "") + r["name"]: r["code"] for r in counties}
    # A county name without its city counts only where it is unique in the province.
    codes.update({name: found[0] for name, found in short.items() if len(found) == 1})
    return sorted(cities.values(), key=len, reverse=True), codes


def _alternatives(names: Sequence[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def _division_and_place(address: pa.Array) -> tuple[pa.Array, pa.Array]:
    """An address's county code (GB/T 2260), written with or without its city, and the
    address as that code plus the rest (`350102|工业路8号`): equal for 福州市鼓楼区工业路8号
    and 鼓楼区工业路8号."""
    cities, codes = _divisions()
    counties = [c for c in codes if not any(c.startswith(city) for city in cities)]
    pattern = f"^(?P<city>{_alternatives(cities)})?(?P<county>{_alternatives(counties)})"
    parts = pc.extract_regex(pc.fill_null(address, ""), pattern)
    key = pc.binary_join_element_wise(parts.field("city"), parts.field("county"), "")
    division = pc.take(
        pa.array(list(codes.values()), pa.string()),
        pc.index_in(key, pa.array(list(codes), pa.string())),
    )
    rest = pc.replace_substring_regex(pc.fill_null(address, ""), pattern, "", max_replacements=1)
    place = pc.binary_join_element_wise(division, rest, "|")
    return division, _clean(pc.if_else(pc.is_valid(address), place, None))


# An enterprise name's company form (有限公司, 有限责任公司, 股份有限公司, 股份公司) and a city in
# brackets (恒晟餐饮（福州）有限公司): both dropped from the name's core.
_FORM = r"(?:股份)?有限(?:责任)?公司$|股份公司$|公司$"
_BRACKETS = r"[（(][^）)]*[）)]"


def _name_core(names: pa.Array) -> pa.Array:
    """An enterprise name without its city (prefix or in brackets) and its company form:
    福州恒晟餐饮有限责任公司, 恒晟餐饮（福州）有限公司 and 恒晟餐饮有限公司 → 恒晟餐饮."""
    cities, _ = _divisions()
    prefixes = [c.removesuffix("市") for c in cities]
    core = pc.replace_substring_regex(names, _BRACKETS, "")
    core = pc.replace_substring_regex(
        core, f"^(?:{_alternatives(prefixes)})市?", "", max_replacements=1
    )
    core = pc.replace_substring_regex(core, _FORM, "", max_replacements=1)
    return _clean(core)


def _clean(values: pa.Array) -> pa.Array:
    """Text trimmed, with empty strings as missing."""
    text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def _pinyin_and_chars(names: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Toneless pinyin ("chen wei") and the list of characters of each name, vectorised:
    pypinyin is asked once per distinct character, never per row."""
    longest = min(int(pc.max(pc.utf8_length(names)).as_py() or 0), 8)
    # Past a name's end a slice is "": null, so it is neither a character nor a sound.
    chars = [_clean(pc.utf8_slice_codeunits(names, i, i + 1)) for i in range(longest)]
    if not chars:
        return pa.nulls(len(names), pa.string()), pa.nulls(len(names), pa.list_(pa.string()))
    distinct = pc.unique(pa.concat_arrays(chars)).drop_null()
    distinct = distinct.filter(pc.not_equal(distinct, ""))
    sounds = pa.array([lazy_pinyin(c)[0] for c in distinct.to_pylist()], pa.string())
    parts = [pc.take(sounds, pc.index_in(c, value_set=distinct)) for c in chars]
    pinyin = _join_present(parts)
    spaced = _join_present(chars)
    missing = pc.is_null(names)
    return (
        pc.if_else(missing, pa.scalar(None, pa.string()), pinyin),
        pc.if_else(
            missing, pa.scalar(None, pa.list_(pa.string())), pc.utf8_split_whitespace(spaced)
        ),
    )


def _join_present(parts: list[pa.Array]) -> pa.Array:
    """The non-null values of each row joined by single spaces. (pyarrow 26's
    `binary_join_element_wise(..., null_handling="skip")` drops a row whose values are all
    null, so a shorter array came back when a source had rows without a name.)"""
    joined = pc.binary_join_element_wise(*parts, " ", null_handling="replace", null_replacement="")
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(joined, " {2,}", " "))


def _sorted_chars(values: pa.Array) -> pa.Array:
    """Each 18-character value with its characters sorted (equal for a transposition)."""
    ok = pc.fill_null(pc.equal(pc.binary_length(values), 18), False)
    text = pc.if_else(ok, values, "0" * 18).to_numpy(zero_copy_only=False).astype("S18")
    matrix = np.sort(text.view(np.uint8).reshape(-1, 18), axis=1)
    sorted_text = pa.array(matrix.reshape(-1).view("S18").astype("U18"), pa.string())
    return pc.if_else(ok, sorted_text, pa.scalar(None, pa.string()))


def _dates(born: pa.ChunkedArray | None, n: int) -> tuple[pa.Array, pa.Array]:
    """Birth dates as ISO text, and the same with day and month exchanged (when that is a date)."""
    if born is None:
        return pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
    values = born.combine_chunks()
    if pa.types.is_string(values.type):
        values = pc.cast(
            pc.strptime(_clean(values), "%Y-%m-%d", "s", error_is_null=True), pa.date32()
        )
    text = pc.strftime(pc.cast(values, pa.timestamp("s")), "%Y-%m-%d")
    year = pc.year(values)
    month = pc.month(values)
    day = pc.day(values)

    def pad(a: pa.Array) -> pa.Array:
        return pc.utf8_lpad(pc.cast(a, pa.string()), 2, "0")

    swapped = pc.binary_join_element_wise(pc.cast(year, pa.string()), pad(day), pad(month), "-")
    can = pc.and_(pc.less_equal(day, 12), pc.not_equal(day, month))
    return text, pc.if_else(can, swapped, pa.scalar(None, pa.string()))


# --------------------------------------------------------------------------- the model


def _null(col: str) -> cll.NullLevel:
    return cll.NullLevel(col)


def _person_comparisons() -> list[Any]:
    lev = cll.LevenshteinLevel
    return [
        cl.CustomComparison(
            output_column_name="ric",
            comparison_description="identity number",
            comparison_levels=[
                _null("ric"),
                cll.ExactMatchLevel("ric"),
                cll.CustomLevel("ric17_l = ric17_r", "same but the check digit"),
                cll.CustomLevel(
                    "ric_sorted_l = ric_sorted_r AND levenshtein(ric_l, ric_r) <= 2",
                    "two digits transposed",
                ),
                lev("ric", 1),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="name",
            comparison_description="name by characters and pinyin",
            comparison_levels=[
                _null("name"),
                cll.ExactMatchLevel("name"),
                cll.CustomLevel("name_pinyin_l = name_pinyin_r", "same pinyin (homophone)"),
                cll.ArrayIntersectLevel("name_chars", 2),
                cll.CustomLevel(
                    "surname_l = surname_r AND levenshtein(name_pinyin_l, name_pinyin_r) <= 3",
                    "same surname, close pinyin",
                ),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="birth_date",
            comparison_description="birth date with day and month swaps",
            comparison_levels=[
                _null("birth_date"),
                cll.ExactMatchLevel("birth_date"),
                cll.CustomLevel(
                    "birth_date_l = dob_swapped_r OR dob_swapped_l = birth_date_r",
                    "day and month swapped",
                ),
                lev("birth_date", 1),
                cll.ElseLevel(),
            ],
        ),
        cl.ExactMatch("sex"),
        cl.CustomComparison(
            output_column_name="phone",
            comparison_description="phone",
            comparison_levels=[
                _null("phone"),
                cll.ExactMatchLevel("phone"),
                lev("phone", 1),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="address",
            comparison_description="address by division",
            comparison_levels=[
                _null("address"),
                cll.ExactMatchLevel("address"),
                cll.ExactMatchLevel("addr_county"),
                cll.ElseLevel(),
            ],
        ),
    ]


def _enterprise_comparisons() -> list[Any]:
    return [
        cl.CustomComparison(
            output_column_name="uscc",
            comparison_description="unified social credit code",
            comparison_levels=[
                _null("uscc"),
                cll.ExactMatchLevel("uscc"),
                cll.CustomLevel("uscc17_l = uscc17_r", "same but the check character"),
                cll.CustomLevel(
                    "uscc_sorted_l = uscc_sorted_r AND levenshtein(uscc_l, uscc_r) <= 2",
                    "two characters transposed",
                ),
                cll.LevenshteinLevel("uscc", 2),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="name",
            comparison_description="name by its core (no city, no company form), characters, pinyin",
            comparison_levels=[
                _null("name"),
                cll.ExactMatchLevel("name"),
                cll.CustomLevel("name_core_l = name_core_r", "same core name"),
                cll.CustomLevel("name_pinyin_l = name_pinyin_r", "same pinyin (homophone)"),
                cll.ArrayIntersectLevel("name_chars", 3),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="legal_person_ric",
            comparison_description="legal representative's identity number",
            comparison_levels=[
                _null("legal_person_ric"),
                cll.ExactMatchLevel("legal_person_ric"),
                cll.CustomLevel("legal17_l = legal17_r", "same but the check digit"),
                cll.ElseLevel(),
            ],
        ),
        cl.CustomComparison(
            output_column_name="address",
            comparison_description="address by division code",
            comparison_levels=[
                _null("address"),
                cll.ExactMatchLevel("addr_place"),
                cll.ExactMatchLevel("addr_county"),
                cll.ElseLevel(),
            ],
        ),
    ]


def _blocking(kind: Kind) -> list[Any]:
    if kind == "person":
        return [
            block_on("ric17"),
            block_on("ric_sorted", "birth_date"),
            block_on("name_pinyin", "birth_date"),
            "l.name_pinyin = r.name_pinyin AND l.birth_date = r.dob_swapped",
            block_on("phone"),
            block_on("surname", "birth_date", "addr_county"),
        ]
    return [
        block_on("uscc17"),
        block_on("uscc_sorted"),
        block_on("name_core"),
        block_on("name_pinyin"),
        block_on("legal17"),
    ]


def settings(kind: Kind, *, explain: bool = False) -> SettingsCreator:
    """Splink's settings for one subject kind."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="uid",
        comparisons=_person_comparisons() if kind == "person" else _enterprise_comparisons(),
        blocking_rules_to_generate_predictions=_blocking(kind),
        retain_matching_columns=explain,
        retain_intermediate_calculation_columns=explain,
    )


@dataclass(frozen=True)
class Model:
    """A trained model: Splink's settings as JSON (kept in the control plane)."""

    kind: Kind
    settings_json: dict[str, Any]

    def dumps(self) -> str:
        return json.dumps(self.settings_json, ensure_ascii=False)


def _spark_api() -> Any:
    from splink.backends.spark import SparkAPI

    from minyun.subjects.spark import local as spark_local
    from minyun.subjects.spark import session

    # The comparisons use Spark's own functions only: no similarity jar to register.
    return SparkAPI(  # type: ignore[no-untyped-call]
        spark_session=session(),
        break_lineage_method="persist",
        num_partitions_on_repartition=1 if spark_local() else 2,
        register_udfs_automatically=False,
    )


def for_engine(model: Model, engine: Engine) -> dict[str, Any]:
    """The trained settings with each level's SQL written for `engine` (the m and u values kept)."""
    if engine == "duckdb":
        return model.settings_json
    fresh = settings(model.kind).create_settings_dict(sql_dialect_str=engine)
    for key in ("probability_two_random_records_match",):
        if key in model.settings_json:
            fresh[key] = model.settings_json[key]
    for new, old in zip(fresh["comparisons"], model.settings_json["comparisons"], strict=True):
        for new_level, old_level in zip(
            new["comparison_levels"], old["comparison_levels"], strict=True
        ):
            for key in ("m_probability", "u_probability"):
                if key in old_level:
                    new_level[key] = old_level[key]
    return fresh


def _linker(
    frame: pa.Table, settings_: SettingsCreator | dict[str, Any], engine: Engine
) -> tuple[Linker, Any]:
    if engine == "spark":
        from minyun.subjects.spark import to_spark

        api = _spark_api()
        return Linker(to_spark(frame), settings_, api), None
    con = duckdb.connect()
    # Two cores, a bounded memory (spilling to disk past it), and no copy of the input: Splink
    # reads the Arrow table where it is.
    con.execute("SET threads TO 2")
    con.execute("SET memory_limit = '2GB'")
    con.execute("SET preserve_insertion_order = false")
    con.register("subject_records", frame)
    return Linker("subject_records", settings_, DuckDBAPI(connection=con)), con


def train(frame: pa.Table, kind: Kind, *, engine: Engine = "duckdb", seed: int = 1) -> Model:
    """Train the kind's model on its records, unsupervised: u by random sampling, m by EM."""
    linker, con = _linker(frame, settings(kind), engine)
    try:
        t = linker.training
        if kind == "person":
            t.estimate_probability_two_random_records_match(
                [block_on("ric"), "l.name = r.name AND l.birth_date = r.birth_date"], recall=0.8
            )
            t.estimate_u_using_random_sampling(max_pairs=1e6, seed=seed)
            t.estimate_parameters_using_expectation_maximisation(
                block_on("ric17"), fix_u_probabilities=True
            )
            t.estimate_parameters_using_expectation_maximisation(
                block_on("name_pinyin", "birth_date"), fix_u_probabilities=True
            )
        else:
            t.estimate_probability_two_random_records_match([block_on("uscc")], recall=0.8)
            t.estimate_u_using_random_sampling(max_pairs=1e6, seed=seed)
            t.estimate_parameters_using_expectation_maximisation(
                block_on("uscc17"), fix_u_probabilities=True
            )
            t.estimate_parameters_using_expectation_maximisation(
                block_on("name_core"), fix_u_probabilities=True
            )
        settings_json = linker.misc.save_model_to_json()
        return Model(kind, identity_u_without_matches(settings_json, IDENTITY[kind]))
    finally:
        if con is not None:
            con.close()


#: The kind's identity number: the citizen's identity number, the enterprise's credit code.
IDENTITY: dict[Kind, str] = {"person": "ric", "enterprise": "uscc"}
#: Two different subjects' rows agree on a valid identity number (or credit code) at most
#: once in a million pairs (a number keyed onto another's row).
IDENTITY_U_FLOOR = 1e-6


def identity_u_without_matches(settings_json: dict[str, Any], column: str) -> dict[str, Any]:
    """The settings with the u of an exact identity number (or credit code) taken without
    the same-subject pairs (decision 0016).

    u comes from random sampling, which counts every sampled pair as two subjects; for a
    unique number the pairs agreeing on it are nearly all the same subject, so the sampled
    rate is about the prior times m, and an exact number alone could not outweigh the prior
    (posterior about 0.6): rows that hold only the number (most departments' rows) would
    never link. The share of pairs of two subjects agreeing is what remains,
    (u_sampled − λ·m) / (1 − λ), at least `IDENTITY_U_FLOOR`.
    """
    out = copy.deepcopy(settings_json)
    prior = float(out["probability_two_random_records_match"])
    for comparison in out["comparisons"]:
        if comparison.get("output_column_name") != column:
            continue
        for level in comparison["comparison_levels"]:
            if str(level.get("label_for_charts", "")).startswith("Exact match"):
                m, u = level.get("m_probability"), level.get("u_probability")
                if m is None or u is None:
                    continue
                level["u_probability"] = max((u - prior * m) / (1 - prior), IDENTITY_U_FLOOR)
    return out


@dataclass(frozen=True)
class Scored:
    """The pairs at or above the review threshold, and the clusters at the link threshold."""

    pairs: pa.Table  # uid_l, uid_r, match_weight, match_probability
    clusters: pa.Table  # uid, cluster_id


def pairwise_scores(frame: pa.Table, model: Model, *, engine: Engine = "duckdb") -> Scored:
    """Score candidate pairs and cluster them (connected components at LINK_THRESHOLD)."""
    linker, con = _linker(frame, for_engine(model, engine), engine)
    try:
        predictions = linker.inference.predict(threshold_match_probability=REVIEW_THRESHOLD)
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=LINK_THRESHOLD
        )
        pairs = _arrow(predictions, "uid_l, uid_r, match_weight, match_probability", engine)
        cluster_table = _arrow(clusters, "uid, cluster_id", engine)
        return Scored(pairs, cluster_table)
    finally:
        if con is not None:
            con.close()


def _arrow(frame: Any, columns: str, engine: Engine) -> pa.Table:
    if engine == "spark":
        from minyun.subjects.spark import to_arrow

        return to_arrow(
            frame.as_spark_dataframe().selectExpr(*[c.strip() for c in columns.split(",")])
        )
    return frame.as_duckdbpyrelation().select(columns).to_arrow_table()


def explain(model: Model, left: dict[str, Any], right: dict[str, Any]) -> list[dict[str, Any]]:
    """Each comparison's level and match weight for one pair of records (feature dicts)."""
    frame = features(pa.Table.from_pylist([left, right]), model.kind)
    rows = frame.to_pylist()
    spec = dict(model.settings_json)
    spec["retain_intermediate_calculation_columns"] = True
    spec["retain_matching_columns"] = True
    linker, con = _linker(frame, spec, "duckdb")
    try:
        result = linker.inference.compare_two_records(rows[0], rows[1]).as_record_dict()[0]
    finally:
        if con is not None:
            con.close()
    out = [{"comparison": "prior", "level": "", "match_weight": float(_prior_weight(spec))}]
    for comparison in spec["comparisons"]:
        name = comparison["output_column_name"]
        gamma = result.get(f"gamma_{name}")
        bf = result.get(f"bf_{name}")
        levels = comparison["comparison_levels"]
        plain = [lv for lv in levels if not lv.get("is_null_level")]
        # Splink numbers the levels from len-1 (the first, most alike) down to 0 (else); null -1.
        by_gamma = {len(plain) - 1 - i: lv for i, lv in enumerate(plain)}
        chosen = (
            by_gamma.get(int(gamma)) if gamma is not None and gamma != -1 else next(iter(levels))
        )
        level = str((chosen or {}).get("label_for_charts", ""))
        weight = 0.0 if bf in (None, 0) else float(np.log2(bf))
        out.append({"comparison": name, "level": level, "match_weight": round(weight, 3)})
    out.append(
        {
            "comparison": "total",
            "level": "",
            "match_weight": round(float(result["match_weight"]), 3),
        }
    )
    return out


def _prior_weight(spec: dict[str, Any]) -> float:
    p = float(spec.get("probability_two_random_records_match", 1e-4))
    return round(float(np.log2(p / (1 - p))), 3)


def pairwise_metrics(predicted: pa.Table, truth: pa.Table) -> dict[str, float]:
    """Pairwise precision, recall and F1 of clusters against the truth.

    Both tables have `uid`; `predicted` a `cluster_id`, `truth` a `true_id`. A pair counts
    when its two records share a cluster (predicted) or a true id (truth).
    """
    joined = predicted.join(truth, "uid")

    def pairs(table: pa.Table, keys: Sequence[str]) -> int:
        sizes = table.group_by(list(keys)).aggregate([("uid", "count")])["uid_count"].to_numpy()
        return int((sizes.astype(np.int64) * (sizes - 1) // 2).sum())

    tp = pairs(joined, ["cluster_id", "true_id"])
    found = pairs(joined, ["cluster_id"])
    real = pairs(joined, ["true_id"])
    precision = tp / found if found else 1.0
    recall = tp / real if real else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------------- stable ids


def assign_ids(
    clusters: pa.Table, previous: pa.Table, *, prefix: str, next_number: int
) -> tuple[pa.Table, pa.Table]:
    """Subject ids for new clusters, keeping the previous ones where they continue.

    `clusters` has `uid, cluster_id`; `previous` has `uid, subject_id` (the last run's).
    The rule: each previous subject is carried by the cluster holding most of its rows (on a
    tie, the one holding its smallest `uid`), so when a subject splits the larger part keeps
    the id and the others are recorded as split off it; a cluster carrying several keeps the
    one with most rows there (on a tie the oldest id) and the others are merged into it;
    every other cluster gets a new id `<prefix><number>` from `next_number` on.
    Returns `(uid, subject_id)` and the changes `(kind, subject_id, other_id, rows)`.
    """
    con = duckdb.connect()
    try:
        con.register("clusters", clusters.select(["uid", "cluster_id"]))
        con.register("previous", previous.select(["uid", "subject_id"]))
        con.execute(_ASSIGN_SQL.format(prefix=prefix.replace("'", ""), start=int(next_number)))
        ids = con.sql("SELECT uid, subject_id FROM final_rows").to_arrow_table()
        changes = con.sql(_CHANGES_SQL).to_arrow_table()
        return ids, changes
    finally:
        con.close()


_ASSIGN_SQL = """
CREATE TEMP TABLE joined AS
    SELECT c.uid, CAST(c.cluster_id AS VARCHAR) AS cluster_id, p.subject_id
    FROM clusters c LEFT JOIN previous p USING (uid);
CREATE TEMP TABLE counts AS
    SELECT cluster_id, subject_id, count(*) AS n, min(uid) AS first_uid FROM joined
    WHERE subject_id IS NOT NULL GROUP BY cluster_id, subject_id;
CREATE TEMP TABLE subject_home AS
    SELECT subject_id, cluster_id, n FROM (
        SELECT *, row_number() OVER (PARTITION BY subject_id ORDER BY n DESC, first_uid) AS r
        FROM counts) WHERE r = 1;
CREATE TEMP TABLE kept_first AS
    SELECT cluster_id, subject_id FROM (
        SELECT *, row_number() OVER (PARTITION BY cluster_id ORDER BY n DESC, subject_id) AS r
        FROM subject_home) WHERE r = 1;
-- A subject whose best cluster went to a larger one lives on in its next best cluster that is
-- still free (its part left behind), if it has one; otherwise it was merged.
CREATE TEMP TABLE second_home AS
    SELECT subject_id, cluster_id, n FROM (
        SELECT *, row_number() OVER (PARTITION BY subject_id ORDER BY n DESC, first_uid) AS r
        FROM counts
        WHERE subject_id NOT IN (SELECT subject_id FROM kept_first)
          AND cluster_id NOT IN (SELECT cluster_id FROM kept_first)) WHERE r = 1;
CREATE TEMP TABLE kept AS
    SELECT cluster_id, subject_id FROM kept_first
    UNION ALL
    SELECT cluster_id, subject_id FROM (
        SELECT *, row_number() OVER (PARTITION BY cluster_id ORDER BY n DESC, subject_id) AS r
        FROM second_home) WHERE r = 1;
CREATE TEMP TABLE fresh AS
    SELECT cluster_id, '{prefix}' || lpad(CAST({start} - 1 + row_number() OVER (ORDER BY first_uid)
        AS VARCHAR), 10, '0') AS subject_id
    FROM (SELECT cluster_id, min(uid) AS first_uid FROM joined GROUP BY cluster_id)
    WHERE cluster_id NOT IN (SELECT cluster_id FROM kept);
CREATE TEMP TABLE final AS SELECT * FROM kept UNION ALL SELECT * FROM fresh;
CREATE TEMP TABLE final_rows AS
    SELECT j.uid, f.subject_id, j.subject_id AS before FROM joined j JOIN final f USING (cluster_id);
"""

_CHANGES_SQL = """
SELECT 'created' AS kind, f.subject_id, NULL AS other_id, count(*) AS rows
FROM final_rows f WHERE f.subject_id IN (SELECT subject_id FROM fresh)
GROUP BY f.subject_id HAVING count(before) = 0
UNION ALL
SELECT 'grown', subject_id, NULL, count(*) FROM final_rows
WHERE before IS NULL AND subject_id IN (SELECT subject_id FROM kept) GROUP BY subject_id
UNION ALL
SELECT CASE WHEN before IN (SELECT subject_id FROM final)
            OR subject_id IN (SELECT subject_id FROM fresh) THEN 'split' ELSE 'merged' END,
       subject_id, before, count(*)
FROM final_rows WHERE before IS NOT NULL AND before <> subject_id
GROUP BY subject_id, before
ORDER BY 1, 2, 3
"""


def row_hashes(records: pa.Table, columns: Sequence[str]) -> pa.Array:
    """A 64-bit hash of each row's linking fields (what an incremental run compares)."""
    con = duckdb.connect()
    try:
        con.register("records", records.select(list(columns)))
        parts = ", ".join(f"coalesce(CAST({c} AS VARCHAR), '\\0')" for c in columns)
        sql = f"SELECT CAST(hash(concat_ws('\\1', {parts})) >> 1 AS BIGINT) AS h FROM records"
        return con.sql(sql).to_arrow_table()["h"].combine_chunks()
    finally:
        con.close()


def ident_hashes(values: pa.Array, secret: bytes) -> pa.Array:
    """A keyed SHA-256 (hex) of each identity number or credit code, upper-cased; null stays null."""
    con = duckdb.connect()
    try:
        con.register("idents", pa.table({"v": values}))
        sql = "SELECT CASE WHEN v IS NULL OR v = '' THEN NULL ELSE sha256(? || upper(v)) END FROM idents"
        return con.sql(sql, params=[secret.hex()]).to_arrow_table().column(0).combine_chunks()
    finally:
        con.close()


def match_new(frame: pa.Table, new_uids: pa.Array, model: Model) -> pa.Table:
    """Pairs (uid_l, uid_r, match_probability) at or above REVIEW_THRESHOLD between the new
    rows and every row (new ones included), by the model's blocking rules."""
    linker, con = _linker(frame, model.settings_json, "duckdb")
    try:
        new = frame.filter(pc.is_in(frame["uid"], value_set=new_uids))
        found = linker.inference.find_matches_to_new_records(
            new, match_weight_threshold=float(np.log2(REVIEW_THRESHOLD / (1 - REVIEW_THRESHOLD)))
        )
        pairs = (
            found.as_duckdbpyrelation()
            .select("uid_l, uid_r, match_weight, match_probability")
            .to_arrow_table()
        )
        return pairs.filter(pc.not_equal(pairs["uid_l"], pairs["uid_r"]))
    finally:
        if con is not None:
            con.close()
