"""Property: no batch file ever holds a field or row outside the grant.

Hypothesis draws a grant made by the real service (fields, row scope, clearance), a mode,
and a run of loads (upserts that move rows in and out of the scope, deletes) between two
deliveries to a Parquet file, run as the real job. Each file is checked against the truth
kept here:

- only granted fields, and of those only the ones the clearance shows or masks;
- a masked value never as it is stored, a field above the clearance without a mask never;
- a full file holds exactly the rows in scope; a change file upserts exactly the changed rows
  whose new image is in scope and deletes only rows whose old image was in it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minyun.core.platform import Platform
from minyun.exchange import batch
from minyun.exchange.sinks import CHANGE, SinkSpec
from tests.exchange.batchkit import (
    FIELDS,
    deliver,
    grant,
    load,
    open_node,
    people,
    subscribe,
    world,
)

ROWS = 14
LEVELS = ("public", "internal", "sensitive", "secret")
SCOPES = {
    None: lambda r: True,
    "id <= 6": lambda r: r["id"] <= 6,
    "city = '福州市'": lambda r: r["city"] == "福州市",
    "id in (2, 5, 7, 11)": lambda r: r["id"] in (2, 5, 7, 11),
    "not (age between 30 and 50)": lambda r: not 30 <= r["age"] <= 50,
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    made = open_node(tmp_path_factory.mktemp("batch-props"))
    yield made
    made.close()


def image(i: int, salt: int) -> dict[str, object]:
    return people([i], salt=salt).to_pylist()[0]


def check_fields(columns: list[str], fields: list[str], clearance: str) -> None:
    for name in columns:
        assert name in fields, f"{name} is not granted"
        _, sensitivity, mask = FIELDS[name]
        assert LEVELS.index(sensitivity) <= LEVELS.index(clearance) or mask, name


def check_values(
    rows: list[dict[str, object]], truth: dict[int, dict[str, object]], clearance: str
) -> None:
    for row in rows:
        real = truth[int(row["id"])]  # type: ignore[arg-type]
        for name, shown in row.items():
            if name in ("id", CHANGE):
                continue
            _, sensitivity, _ = FIELDS[name]
            if LEVELS.index(sensitivity) > LEVELS.index(clearance):
                assert shown != real[name], f"{name} leaked in clear"
            else:
                assert shown == real[name]


changes = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "delete"]),
        st.sets(st.integers(1, ROWS + 4), min_size=1, max_size=5),
        st.integers(1, 5),
    ),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.sets(st.sampled_from(["name", "city", "age", "born", "score"]), min_size=1).map(
        lambda s: ["id", *sorted(s)]
    ),
    scope=st.sampled_from(list(SCOPES)),
    clearance=st.sampled_from(["internal", "sensitive", "secret"]),
    mode=st.sampled_from(["full", "incremental"]),
    loads=changes,
)
def test_no_batch_file_holds_a_field_or_row_outside_the_grant(
    node: Platform,
    fields: list[str],
    scope: str | None,
    clearance: str,
    mode: str,
    loads: list[tuple[str, set[int], int]],
) -> None:
    w = world(node, rows=ROWS)
    grant(w, fields, row_filter=scope, clearance=clearance)
    sub = subscribe(w, SinkSpec("file", "parquet"), mode=mode)
    in_scope = SCOPES[scope]
    state = {i: image(i, 0) for i in range(1, ROWS + 1)}
    before = dict(state)
    first = deliver(w, sub)
    assert first is not None and first.state == "delivered", first and first.error
    touched: set[int] = set()
    for kind, ids, salt in loads:
        if kind == "upsert":
            load(w, "upsert", people(sorted(ids), salt=salt))
            state.update({i: image(i, salt) for i in ids})
        else:
            load(w, "delete", people(sorted(ids)))
            for i in ids:
                state.pop(i, None)
        touched |= ids
    second = deliver(w, sub)
    assert second is not None and second.state == "delivered", second and second.error
    for delivery, truth_after in ((first, before), (second, state)):
        path = batch.files_folder(node.settings.var_dir, sub) / str(delivery.file_name)
        table = pq.read_table(path)
        check_fields([c for c in table.column_names if c != CHANGE], fields, clearance)
        rows = table.to_pylist()
        if delivery.kind == "full":
            assert sorted(int(r["id"]) for r in rows) == sorted(
                i for i, r in truth_after.items() if in_scope(r)
            )  # type: ignore[arg-type]
            check_values(rows, truth_after, clearance)
            continue
        upserts = [r for r in rows if r[CHANGE] == "upsert"]
        deletes = [r for r in rows if r[CHANGE] == "delete"]
        assert sorted(int(r["id"]) for r in upserts) == sorted(  # type: ignore[arg-type]
            i for i in touched if i in state and in_scope(state[i])
        )
        check_values(upserts, state, clearance)
        for r in deletes:
            i = int(r["id"])  # type: ignore[arg-type]
            assert i in before and in_scope(before[i]), f"row {i} was never in scope"
            assert i not in state or not in_scope(state[i])
        check_values(deletes, before, clearance)
