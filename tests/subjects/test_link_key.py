"""The minyun schema key `link`: what a field holds for entity resolution."""

from __future__ import annotations

from typing import Any

import pytest

from minyun.core.errors import Invalid
from minyun.core.tableschema import LINK_KINDS, parse_schema


def _schema(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"fields": [{"name": "id", "type": "string"}, *fields], "primaryKey": ["id"]}


def test_linking_fields_parse_and_name_the_subject_kind() -> None:
    ts = parse_schema(
        _schema(
            {"name": "ric", "type": "string", "format": "cn-ric", "link": "person.ric"},
            {"name": "xm", "type": "string", "link": "person.name"},
            {"name": "csrq", "type": "date", "link": "person.birth_date"},
        )
    )
    assert ts.links == {"person.ric": "ric", "person.name": "xm", "person.birth_date": "csrq"}
    assert ts.subject_kind == "person"
    assert ts.field("id").link is None


def test_a_schema_without_links_has_no_subject_kind() -> None:
    assert parse_schema(_schema({"name": "x", "type": "string"})).subject_kind is None


def test_every_listed_kind_is_accepted_on_its_first_type() -> None:
    for kind, types in LINK_KINDS.items():
        ts = parse_schema(_schema({"name": "f", "type": types[0], "link": kind}))
        assert ts.field("f").link == kind


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"name": "f", "type": "string", "link": "person.ric2"}, "link must be one of"),
        ({"name": "f", "type": "string", "link": 3}, "link must be one of"),
        ({"name": "f", "type": "integer", "link": "person.phone"}, "needs type string"),
        ({"name": "f", "type": "integer", "link": "person.birth_date"}, "date or string"),
    ],
)
def test_a_bad_link_is_refused_naming_the_field(field: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message) as caught:
        parse_schema(_schema(field))
    assert caught.value.extra.get("field") == "f"


def test_one_field_per_link_kind() -> None:
    with pytest.raises(Invalid, match="already on field 'a'") as caught:
        parse_schema(
            _schema(
                {"name": "a", "type": "string", "link": "person.name"},
                {"name": "b", "type": "string", "link": "person.name"},
            )
        )
    assert caught.value.extra.get("field") == "b"


def test_persons_and_enterprises_are_not_mixed() -> None:
    with pytest.raises(Invalid, match="not both"):
        parse_schema(
            _schema(
                {"name": "a", "type": "string", "link": "person.name"},
                {"name": "b", "type": "string", "link": "enterprise.name"},
            )
        )
