"""Opening a resource: open types, the release check, views through the plan, versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from minyun.core import policies, views
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.lake import Lake
from minyun.core.security import Principal
from minyun.opendata import service
from tests.opendata import kit

ANON = Principal.anonymous()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def _open(session: Session, o: kit.Open, name: str = "ents", **over: object):
    values: dict[str, object] = {"name": name, "title": "企业登记信息",
                                 "fields": ["uscc", "name", "city", "established"]}  # fmt: skip
    values.update(over)
    return service.open_dataset(session, o.steward, o.resource.code, **values)  # type: ignore[arg-type]


def test_release_check_blocks_fields_above_public(session: Session, lake: Lake) -> None:
    o = kit.open_resource(session, lake)
    with pytest.raises(Invalid) as caught:
        _open(session, o, fields=["uscc", "capital"])
    assert caught.value.code == "release-check"
    assert [p["field"] for p in caught.value.extra["problems"]] == ["capital"]
    with pytest.raises(Invalid):  # filtering on a sensitive field leaks it too
        _open(session, o, row_filter="capital > 100")


def test_aggregating_a_sensitive_field_passes_only_as_sum_over_big_groups(
    session: Session, lake: Lake
) -> None:
    o = kit.open_resource(session, lake)
    agg = [{"fn": "sum", "field": "capital", "name": "total"}]
    with pytest.raises(Invalid):
        _open(session, o, fields=["city"], aggregates=agg, min_group=1)
    with pytest.raises(Invalid):
        _open(session, o, fields=["city"], aggregates=[{"fn": "max", "field": "capital"}],
              min_group=5)  # fmt: skip
    with pytest.raises(Invalid):
        _open(session, o, fields=["city"], aggregates=[{"fn": "sum", "field": "rep_ric"}],
              min_group=5)  # fmt: skip
    ds = _open(session, o, fields=["city"], aggregates=[*agg, {"fn": "count", "name": "n"}],
               min_group=5)  # fmt: skip
    rows = service.search_rows(session, lake, ANON, ds.name, sort=[("city", False)])
    assert rows.table.column_names == ["city", "total", "n"]
    assert rows.table.to_pylist() == [
        {"city": "厦门市", "total": sum(100 * (i + 1) for i in range(1, 30, 3)), "n": 10},
        {"city": "泉州市", "total": sum(100 * (i + 1) for i in range(2, 30, 3)), "n": 10},
        {"city": "福州市", "total": sum(100 * (i + 1) for i in range(0, 30, 3)), "n": 10},
    ]


def test_small_groups_are_suppressed(session: Session, lake: Lake) -> None:
    o = kit.open_resource(session, lake, n=12)  # 4 a city
    ds = _open(session, o, fields=["city"], aggregates=[{"fn": "avg", "field": "capital"}],
               min_group=5)  # fmt: skip
    assert service.search_rows(session, lake, ANON, ds.name).table.num_rows == 0


def test_open_type_none_cannot_be_opened(session: Session, lake: Lake) -> None:
    o = kit.open_resource(session, lake, open_type="none")
    with pytest.raises(Conflict) as caught:
        _open(session, o)
    assert caught.value.code == "not-open"


def test_only_the_providers_steward_opens(session: Session, lake: Lake) -> None:
    o = kit.open_resource(session, lake)
    other = kit.open_resource(session, lake)
    with pytest.raises(Forbidden):
        service.open_dataset(session, other.steward, o.resource.code, name="x1", title="标题",
                             fields=["uscc"])  # fmt: skip


def test_anonymous_reads_only_the_view_through_the_open_data_plan(
    session: Session, lake: Lake
) -> None:
    o = kit.open_resource(session, lake)
    ds = _open(session, o, row_filter="city = '福州市'")
    rows = service.search_rows(session, lake, ANON, ds.key, limit=3)
    assert rows.table.column_names == ["uscc", "name", "city", "established"]
    assert rows.total == 10 and rows.table.num_rows == 3
    assert set(rows.table.column("city").to_pylist()) == {"福州市"}
    plan = service.read_plan(session, ANON, ds)
    assert plan.policy == "open-data" and plan.clearance == "public"
    assert "capital" not in plan.visible and "rep_ric" not in plan.visible
    # A view reaching past the plan is refused by core itself.
    bad = views.View(("uscc", "capital"))
    with pytest.raises(Forbidden):
        views.check(plan, bad)
    with pytest.raises(Forbidden):
        views.check(
            plan,
            views.View(
                ("city",), aggregates=(views.Aggregate("max", "capital", "m"),), min_group=5
            ),
        )


def test_the_plain_row_api_never_shows_an_aggregate_only_field(
    session: Session, lake: Lake
) -> None:
    o = kit.open_resource(session, lake)
    _open(session, o, name="sums", fields=["city"],
          aggregates=[{"fn": "sum", "field": "capital"}], min_group=5)  # fmt: skip
    plan = service.read_plan(session, ANON, service.get_dataset(session, "sums"))
    assert plan.aggregated == frozenset({"capital"})
    assert "capital" not in plan.visible
    from minyun.query import service as query

    page = query.query_rows(session, lake, ANON, o.resource.code, limit=5)
    assert page.table.column_names == ["city"]


def test_conditional_datasets_are_listed_but_rows_need_a_grant(
    session: Session, lake: Lake
) -> None:
    o = kit.open_resource(session, lake, open_type="conditional", sharing_type="conditional")
    ds = _open(session, o)
    assert service.access_dataset(session, ANON, ds.name).name == ds.name
    with pytest.raises(Unauthenticated):
        service.search_rows(session, lake, ANON, ds.name)


def test_withdrawn_and_unknown_datasets_are_not_found(session: Session, lake: Lake) -> None:
    o = kit.open_resource(session, lake)
    ds = _open(session, o)
    service.withdraw_dataset(session, o.steward, ds.name, reason="过期")
    for name in (ds.name, "no-such"):
        with pytest.raises(NotFound):
            service.search_rows(session, lake, ANON, name)
    with pytest.raises(Unauthenticated):  # nothing open of the resource any more
        from minyun.query import service as query

        query.query_rows(session, lake, ANON, o.resource.code)


def test_a_new_version_is_released_as_the_next_open_version(session: Session, lake: Lake) -> None:
    o = kit.open_resource(session, lake)
    ds = _open(session, o)
    kit.new_version(session, lake, o.resource, kit.enterprises(45))
    assert service.refresh(session, o.resource.id) == [ds.name]
    assert (ds.version, ds.lake_version, ds.state) == (2, 1, "published")
    assert service.search_rows(session, lake, ANON, ds.name).total == 45
    history = service.versions(session, ds)
    assert [(v.number, v.lake_version, v.state) for v in history] == [(2, 1, "released"),
                                                                     (1, 0, "released")]  # fmt: skip
    assert service.refresh(session, o.resource.id) == []


def test_a_version_that_fails_the_check_suspends_the_dataset(session: Session, lake: Lake) -> None:
    o = kit.open_resource(session, lake)
    ds = _open(session, o)
    schema = kit.schema()
    schema["fields"][1]["sensitivity"] = "sensitive"  # name is no longer public
    from minyun.catalog import service as catalog

    catalog.set_schema(session, kit.SYSTEM, o.resource.code, schema)
    kit.new_version(session, lake, o.resource, kit.enterprises(5))
    service.refresh(session, o.resource.id)
    assert ds.state == "suspended"
    assert service.versions(session, ds)[0].state == "refused"
    with pytest.raises(NotFound):
        service.search_rows(session, lake, ANON, ds.name)


def test_open_data_policy_answers_only_reads_of_unconditional_published_resources() -> None:
    facts = policies.DataResource(1, "r", 1, "published", "unconditional", "unconditional",
                                  (policies.FieldFacts("a", "public"),
                                   policies.FieldFacts("b", "sensitive")))  # fmt: skip
    policy = policies.OpenData(
        finders=[lambda s, r: policies.OpenRelease(("d",), frozenset({"a", "b"}))]
    )
    verdict = policy.evaluate(None, ANON, policies.READ, facts)  # type: ignore[arg-type]
    assert verdict is not None and verdict.clearance == "public"
    plan = policies.plan_for(ANON, policies.READ, facts, verdict)
    assert plan.visible == ["a"]  # b is sensitive: dropped whatever the release says
    from dataclasses import replace

    for other in (replace(facts, open_type="conditional"), replace(facts, status="draft")):
        assert policy.evaluate(None, ANON, policies.READ, other) is None  # type: ignore[arg-type]
    assert policy.evaluate(None, ANON, policies.REJECTS, facts) is None  # type: ignore[arg-type]
    assert policies.OpenData().evaluate(None, ANON, policies.READ, facts) is None  # type: ignore[arg-type]


def test_a_committed_loads_event_refreshes_the_datasets_in_its_transaction(
    session: Session, lake: Lake
) -> None:
    from minyun.core import events

    o = kit.open_resource(session, lake)
    ds = _open(session, o)
    kit.new_version(session, lake, o.resource, kit.enterprises(12))
    events.publish(session, kind="resource.updated", subject=o.resource.code, data={})
    assert (ds.version, ds.lake_version) == (2, 1)
    assert service.search_rows(session, lake, ANON, ds.name).total == 12


def test_a_big_download_is_sent_batch_by_batch(session: Session, lake: Lake) -> None:
    from minyun.opendata import downloads

    o = kit.open_resource(session, lake, n=150_000)
    _open(session, o, name="big", fields=["uscc", "city"])
    found = service.open_download(session, lake, ANON, "big", fmt="csv")
    sizes = [len(chunk) for chunk in downloads.csv(found.schema, found.batches)]
    lines = 150_001  # the header and every row, none held back
    assert sum(sizes) > lines * len("91350100MA00000000,福州市") and len(sizes) >= 4
    assert max(sizes) < sum(sizes) / 2  # never the whole table in one piece
