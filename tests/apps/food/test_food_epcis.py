"""GS1 identifiers and the CBV 2.0 event hash, without a database."""

from __future__ import annotations

import copy

import pytest

from minyun.apps.food import epcis, gs1
from tests.apps.food.conftest import EXAMPLES, example


@pytest.mark.parametrize(
    ("urn", "dl"),
    [
        ("urn:epc:id:sgtin:0614141.107346.2017", "https://id.gs1.org/01/10614141073464/21/2017"),
        ("urn:epc:id:sscc:0614141.1234567890", "https://id.gs1.org/00/106141412345678908"),
        ("urn:epc:id:sgln:0614141.07346.1234", "https://id.gs1.org/414/0614141073467/254/1234"),
        ("urn:epc:id:sgln:0614141.00888.0", "https://id.gs1.org/414/0614141008889"),
        (
            "urn:epc:class:lgtin:4012345.012345.998877",
            "https://id.gs1.org/01/04012345123456/10/998877",
        ),
        ("urn:epc:idpat:sgtin:4012345.098765.*", "https://id.gs1.org/01/04012345987652"),
        ("urn:epc:id:pgln:4000001.00012", "https://id.gs1.org/417/4000001000128"),
        ("urn:epc:id:giai:4000001.111", "https://id.gs1.org/8004/4000001111"),
    ],
)
def test_epc_urns_and_digital_links_name_the_same_thing(urn: str, dl: str) -> None:
    assert gs1.canonical(urn) == dl
    assert gs1.canonical(dl) == dl
    assert gs1.canonical(dl.replace("https://id.gs1.org", "https://shop.example.cn")) == dl


def test_a_product_of_a_digital_link() -> None:
    product = gs1.product_of("https://id.gs1.org/01/06901234567892/10/LOT-7")
    assert product == gs1.Product("06901234567892", lot="LOT-7")
    assert product.path == "/01/06901234567892/10/LOT-7"
    assert gs1.product_of("https://id.gs1.org/01/06901234567891/10/LOT-7") is None  # check digit
    assert gs1.product_of("urn:epc:id:sscc:0614141.1234567890") is None


def _event() -> dict[str, object]:
    return {
        "type": "ObjectEvent",
        "eventTime": "2024-03-01T08:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2018", "urn:epc:id:sgtin:0614141.107346.2017"],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
    }


def test_the_pre_hash_string_follows_the_canonical_order() -> None:
    assert epcis.prehash(_event()) == (
        "eventType=ObjectEvent"
        "eventTime=2024-03-01T00:00:00.000Z"
        "eventTimeZoneOffset=+08:00"
        "epcList"
        "epc=https://id.gs1.org/01/10614141073464/21/2017"
        "epc=https://id.gs1.org/01/10614141073464/21/2018"
        "action=OBSERVE"
        "bizStep=https://ref.gs1.org/cbv/BizStep-shipping"
        "readPointid=https://id.gs1.org/414/0614141073467/254/1234"
    )


def test_the_hash_id_ignores_form_and_order_but_not_content() -> None:
    base = epcis.event_hash_id(_event())
    assert base.startswith("ni:///sha-256;") and base.endswith("?ver=CBV2.0")
    same = dict(reversed(list(_event().items())))
    same["epcList"] = [
        "https://id.gs1.org/01/10614141073464/21/2017",
        "urn:epc:id:sgtin:0614141.107346.2018",
    ]
    same["bizStep"] = "urn:epcglobal:cbv:bizstep:shipping"
    same["eventID"] = "urn:uuid:ignored"
    same["recordTime"] = "2030-01-01T00:00:00Z"
    assert epcis.event_hash_id(same) == base
    other = dict(_event(), bizStep="receiving")
    assert epcis.event_hash_id(other) != base
    extended = dict(_event(), **{"ex:temp": "4"})
    assert epcis.event_hash_id(extended, {"ex": "https://ns.example.cn/"}) != base


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_official_examples_pass_the_official_schema(name: str) -> None:
    epcis.validate_document(example(name))


def test_schema_errors_say_where() -> None:
    doc = copy.deepcopy(example("Example_9.6.3-AggregationEvent.jsonld"))
    doc["epcisBody"]["eventList"][0]["action"] = "CREATE"
    with pytest.raises(epcis.DocumentError) as caught:
        epcis.validate_document(doc)
    assert any("epcisBody/eventList/0" in e for e in caught.value.errors)


def test_the_fast_validator_agrees_with_jsonschema() -> None:
    from tests.apps.food.test_food_capture import _bad_docs

    validator = epcis._validator()
    docs = [example(n) for n in EXAMPLES] + list(_bad_docs().values())
    from minyun.apps.food import sample

    docs += [sample.chain(), sample.chain(cold_break=False)]
    for doc in docs:
        assert epcis._fast().is_valid(doc) == validator.is_valid(doc)
