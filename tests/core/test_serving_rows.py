"""The serving reader's Python path (`shown_rows`) against its Arrow path (`shown`).

A key lookup's row is projected and masked in Python when it is one of a few rows of plain
types. Hypothesis draws rows of every type the index stores, plans that mask, drop or show
each field, and checks that the Python path gives exactly what the Arrow path gives, for
the rows as the index stores them (JSON, read back).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minyun.core import policies, serving
from minyun.core.policies import DataResource, FieldFacts, Verdict
from minyun.core.security import Principal

SECRET = b"serving-rows-test-node-secret-00"
READER = Principal(kind="client", name="c-1", organization_id=3, scopes=frozenset({"x"}))
MASKS = (
    "keep(3,4)", "keep(0,2)", "name", "pseudonym", "null", "date(year)", "date(month)",
    "address(city)",
)  # fmt: skip
_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("林小闽欧阳司马福建省福州市鼓楼区0123456789-* \u3000"),
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    ),
    max_size=20,
)
# (Arrow type, values) of each kind of column the index keeps.
COLUMNS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "text": (pa.string(), _TEXT),
    "big": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "small": (pa.int16(), st.integers(-(2**15), 2**15 - 1)),
    "real": (pa.float64(), st.floats(allow_nan=False, width=64)),
    "flag": (pa.bool_(), st.booleans()),
    "day": (pa.date32(), st.dates()),
    "stamp": (pa.timestamp("us", tz="UTC"), st.datetimes(timezones=st.just(dt.UTC))),
    "money": (pa.decimal128(12, 2), st.decimals(-(10**9), 10**9, places=2)),
}


@st.composite
def cases(draw: st.DrawFn) -> tuple[pa.Table, policies.AccessPlan]:
    names = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, unique=True))
    rows = draw(st.integers(min_value=0, max_value=serving.FEW_ROWS + 1))
    columns = {"id": pa.array(range(rows), pa.int64())}
    for name in names:
        type_, values = COLUMNS[name]
        drawn = draw(st.lists(st.one_of(st.none(), values), min_size=rows, max_size=rows))
        columns[name] = pa.array(drawn, type_)
    fields = [FieldFacts("id", "public")] + [
        FieldFacts(
            name,
            draw(st.sampled_from(policies.LEVELS)),
            draw(st.one_of(st.none(), st.sampled_from(MASKS))),
        )
        for name in names
    ]
    resource = DataResource(
        id=1, code="rows", provider_id=9, status="published", sharing_type="conditional",
        open_type="none", fields=tuple(fields), primary_key=("id",), schema_version="1.0",
        lake_version=0,
    )  # fmt: skip
    verdict = Verdict("drawn", draw(st.sampled_from(policies.LEVELS)))
    return pa.table(columns), policies.plan_for(READER, policies.READ, resource, verdict)


def stored(table: pa.Table) -> list[dict[str, Any]]:
    """The rows as the index writes them (its JSON text) and the database gives them back."""
    con = duckdb.connect()
    try:
        return [json.loads(text) for _, text in serving._payload(con, table, ["id"])]
    finally:
        con.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_python_path_equals_the_arrow_path(case: tuple[pa.Table, policies.AccessPlan]) -> None:
    table, plan = case
    rows, wanted = stored(table), plan.fields_for(None)
    arrow = serving.shown(plan, rows, table.schema, wanted, secret=SECRET).to_pylist()
    assert serving.shown_rows(plan, rows, table.schema, wanted, secret=SECRET) == arrow
    for row in rows:  # one row: a key lookup
        one = serving.shown(plan, [row], table.schema, wanted, secret=SECRET).to_pylist()
        assert serving.shown_rows(plan, [row], table.schema, wanted, secret=SECRET) == one


def test_a_key_lookups_row_is_masked_in_python_as_in_arrow() -> None:
    table = pa.table(
        {
            "id": pa.array([7], pa.int64()),
            "name": ["林小闽"],
            "phone": ["13812345678"],
            "born": pa.array([dt.date(1990, 5, 6)], pa.date32()),
            "amount": pa.array([1.0]),
            "money": pa.array([Decimal("12.50")], pa.decimal128(12, 2)),
        }
    )
    fields = (
        FieldFacts("id", "public"),
        FieldFacts("name", "secret", "name"),
        FieldFacts("phone", "secret", "keep(3,4)"),
        FieldFacts("born", "secret", "date(year)"),
        FieldFacts("amount", "public"),
        FieldFacts("money", "public"),
    )
    resource = DataResource(
        id=1, code="rows", provider_id=9, status="published", sharing_type="conditional",
        open_type="none", fields=fields, primary_key=("id",), schema_version="1.0",
        lake_version=0,
    )  # fmt: skip
    plan = policies.plan_for(READER, policies.READ, resource, Verdict("drawn", "internal"))
    wanted = plan.fields_for(None)
    rows = stored(table)
    expected = {"id": 7, "name": "林*闽", "phone": "138****5678", "born": "1990", "amount": 1.0}
    without_money = [f for f in wanted if f != "money"]  # a decimal: the Arrow path
    assert serving.shown_rows(plan, rows, table.schema, without_money, secret=SECRET) == [expected]
    got = serving.shown_rows(plan, rows, table.schema, wanted, secret=SECRET)
    assert got == [expected | {"money": Decimal("12.50")}]
    with pytest.raises(ValueError, match="outside the plan"):
        serving.shown_rows(plan, rows, table.schema, ["nope"], secret=SECRET)
