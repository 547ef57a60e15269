"""Property: whatever the schema, the plan and the request, nothing leaves outside the plan.

Hypothesis draws a schema (fields with a sensitivity and maybe a mask), a policy's verdict
(a clearance, maybe a field subset), and a request (fields, a filter, a sort). Every value is
a sentinel unique to its field and row, so a leak is a sentinel in the answer. The lake
reader and the serving reader are both checked:

- no field outside the plan comes back, by name;
- no value of a field the plan does not show in clear comes back as it is stored;
- filtering or sorting on such a field is refused, never answered.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from minyun.core import policies, reading, serving
from minyun.core.errors import DomainError
from minyun.core.lake import Lake
from minyun.core.policies import DataResource, FieldFacts, Verdict
from minyun.core.security import Principal

SECRET = b"property-test-node-secret-000000"
MASKS = ("keep(2,2)", "keep(0,3)", "name", "pseudonym", "null", "address(city)")
ROWS = 6
READER = Principal(kind="user", name="reader", organization_id=3, roles=frozenset({"consumer"}))


def value(field: int, row: int) -> str:
    return f"V{field:02d}R{row:02d}Q{field * 31 + row:04d}"


@st.composite
def cases(
    draw: st.DrawFn,
) -> tuple[DataResource, Verdict, list[str] | None, str | None, str | None]:
    n = draw(st.integers(min_value=2, max_value=6))
    fields = [FieldFacts("id", "public")]
    for i in range(1, n):
        fields.append(
            FieldFacts(
                f"f{i}",
                draw(st.sampled_from(policies.LEVELS)),
                draw(st.one_of(st.none(), st.sampled_from(MASKS))),
            )
        )
    names = [f.name for f in fields]
    subset = draw(st.one_of(st.none(), st.sets(st.sampled_from(names), min_size=1)))
    verdict = Verdict(
        "drawn", draw(st.sampled_from(policies.LEVELS)), fields=subset and frozenset(subset)
    )
    asked = draw(st.one_of(st.none(), st.lists(st.sampled_from(names), min_size=1, unique=True)))
    target = draw(st.sampled_from(names))
    filter_ = draw(
        st.one_of(
            st.none(),
            st.just(
                f"{target} = '{value(names.index(target), 2)}'" if target != "id" else "id >= 0"
            ),
            st.just(f"{target} like 'V%'" if target != "id" else "id < 4"),
        )
    )
    sort = draw(st.one_of(st.none(), st.just(f"-{target}")))
    resource = DataResource(
        id=1, code="prop", provider_id=9, status="published", sharing_type="conditional",
        open_type="none", fields=tuple(fields), primary_key=("id",), schema_version="1.0",
        lake_version=0,
    )  # fmt: skip
    return resource, verdict, asked, filter_, sort


def _table(resource: DataResource) -> pa.Table:
    columns: dict[str, pa.Array] = {"id": pa.array(range(ROWS), pa.int64())}
    for i, f in enumerate(resource.fields[1:], start=1):
        columns[f.name] = pa.array([value(i, r) for r in range(ROWS)])
    return pa.table(columns)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return Lake(str(tmp_path_factory.mktemp("lake")))


_written: set[int] = set()


def _ensure(lake: Lake, width: int, table: pa.Table) -> str:
    code = f"prop{width}"
    if width not in _written:
        write_deltalake(lake.table_uri(code), table, mode="overwrite")
        _written.add(width)
    return code


def _check(plan: policies.AccessPlan, table: pa.Table, stored: pa.Table) -> None:
    shown = set(plan.visible)
    assert set(table.column_names) <= shown
    for name in table.column_names:
        if name in plan.clear:
            continue
        hidden = set(stored.column(name).to_pylist())
        leaked = hidden & set(table.column(name).to_pylist())
        assert not leaked, f"{name} ({plan.masked.get(name)}) leaked {leaked}"
    for name in set(stored.column_names) - shown:
        assert name not in table.column_names


@settings(
    max_examples=120,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_nothing_leaves_outside_the_plan(lake: Lake, case: tuple) -> None:  # type: ignore[type-arg]
    resource, verdict, asked, filter_, sort = case
    stored = _table(resource)
    code = _ensure(lake, len(resource.fields), stored)
    resource = DataResource(**{**resource.__dict__, "code": code})
    plan = policies.plan_for(READER, policies.READ, resource, verdict)
    assume(plan.visible)  # authorize refuses a plan that shows nothing (tested in test_policies)
    fields = ",".join(asked) if asked else None
    uses = set(
        policies.filter_fields(
            __import__("minyun.core.filters", fromlist=["x"]).parse_filter(filter_ or "")
        )
    )
    uses |= {sort.lstrip("-")} if sort else set()
    try:
        page = reading.read_rows(
            lake, plan, secret=SECRET, fields=fields, filter=filter_, sort=sort, limit=100
        )
    except DomainError:
        # Refused: then the request named a field the plan drops, or tested a hidden one.
        named = set(asked or []) | uses
        assert named - plan.clear, "a request on clear fields only was refused"
        return
    assert uses <= plan.clear, "a filter or sort on a field not shown in clear was answered"
    assert set(asked or []) <= set(plan.visible)
    _check(plan, page.table, stored)
    # The serving reader, given the same rows, shows exactly what the lake reader showed.
    wanted = plan.fields_for(asked)
    served = serving.shown(plan, stored.to_pylist(), stored.schema, wanted, secret=SECRET)
    _check(plan, served, stored)
    # A key lookup's Python path shows each row as the Arrow path does.
    for row in stored.to_pylist():
        one = serving.shown(plan, [row], stored.schema, wanted, secret=SECRET).to_pylist()
        assert serving.shown_rows(plan, [row], stored.schema, wanted, secret=SECRET) == one
    if filter_ is None and sort is None and plan.row_limit is None:
        ordered = page.table.sort_by("id") if "id" in page.table.column_names else page.table
        assert served.select(ordered.column_names).to_pylist() == ordered.to_pylist()
