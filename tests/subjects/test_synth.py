"""The synthetic population: planted noise of every kind, and known truth."""

from __future__ import annotations

import pyarrow.compute as pc
from pypinyin import lazy_pinyin

from minyun.core.identifiers import is_valid_ric
from minyun.core.tableschema import parse_schema
from minyun.demo.population import iter_persons
from minyun.subjects.synth import HOMOPHONES, SOURCES, person_schema, person_sources

N = 3000


def _people() -> dict[int, dict[str, object]]:
    batch = next(iter_persons(N, seed=7, batch_size=N))
    return {row["person_id"]: row for row in batch.to_pylist()}


def test_homophones_sound_the_same() -> None:
    assert all(lazy_pinyin(a) == lazy_pinyin(b) for a, b in HOMOPHONES.items())


def test_sources_carry_the_planted_noise_and_the_truth() -> None:
    tables, truth = person_sources(N, seed=7)
    people = _people()
    assert truth.num_rows == sum(t.num_rows for t in tables.values())
    assert 2.0 < truth.num_rows / N < 2.5  # about 2.2 rows per person
    assert "ric" not in tables["mzt_shjz"].column_names  # one source with no identity number
    truth_rows = truth.to_pylist()
    counts = {"homophone": 0, "typo": 0, "check": 0, "swap": 0, "dates": 0, "dup": 0, "null": 0}
    seen: set[tuple[str, int]] = set()
    at = 0
    for code, table in tables.items():
        for row in table.to_pylist():
            who = people[truth_rows[at]["person_id"]]
            at += 1
            key = (code, int(str(who["person_id"])))
            counts["dup"] += key in seen
            seen.add(key)
            name, true_name = row.get("name"), str(who["name"])
            if name is not None and name != true_name:
                same_sound = lazy_pinyin(name) == lazy_pinyin(true_name)
                counts["homophone" if same_sound else "typo"] += 1
            ric = row.get("ric")
            if "ric" in row and ric is None:
                counts["null"] += 1
            elif ric is not None and ric != who["ric"]:
                assert ric[:17] == str(who["ric"])[:17] or sorted(ric) == sorted(str(who["ric"]))
                counts["check" if ric[:17] == str(who["ric"])[:17] else "swap"] += 1
                assert not is_valid_ric(ric) or ric[:17] != str(who["ric"])[:17]
            born = row.get("birth_date")
            if born is not None and born != who["birth_date"]:
                true_born = who["birth_date"]
                assert (born.month, born.day) == (true_born.day, true_born.month)  # type: ignore[attr-defined]
                counts["dates"] += 1
    assert all(v > 0 for v in counts.values()), counts


def test_sources_are_deterministic_and_their_schemas_mark_links() -> None:
    a, truth_a = person_sources(500, seed=3)
    b, truth_b = person_sources(500, seed=3)
    assert truth_a.equals(truth_b) and all(a[k].equals(b[k]) for k in a)
    for source in SOURCES:
        ts = parse_schema(person_schema(source))
        assert ts.subject_kind == "person"
        assert set(ts.links) == {f"person.{f}" for f in source.fields}
        assert pc.all(pc.is_valid(a[source.code]["id"])).as_py()
