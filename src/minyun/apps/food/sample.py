"""A synthetic farm-to-table chain as EPCIS 2.0 documents (demo, tests, bench).

Two farms harvest lots of raw tea leaves; a processor blends leaf lots into packed tea lots
(TransformationEvents), packs cases on pallets (AggregationEvents), ships to a
distribution centre, which unpacks and repacks for three retailers; a refrigerated truck
reports temperatures on the way; an inspection samples a lot. Every identifier is a valid
GS1 key (check digits computed), so Digital Links and EPC URNs both resolve to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from minyun.apps.food import epcis, gs1

PREFIX = "6901234"  # a GS1 China company prefix (690–699)


def gln(location: str) -> str:
    """The SGLN URN of a location reference (5 digits) of the company."""
    return f"urn:epc:id:sgln:{PREFIX}.{location}.0"


def lot(item: str, lot_code: str) -> str:
    """The LGTIN class URN of a lot of item reference `item` (6 digits, indicator first)."""
    return f"urn:epc:class:lgtin:{PREFIX}.{item}.{lot_code}"


def sscc(serial: str) -> str:
    """The SSCC URN of a pallet (serial reference: 10 digits, extension first)."""
    return f"urn:epc:id:sscc:{PREFIX}.{serial}"


FARM_A, FARM_B = gln("10001"), gln("10002")
PROCESSOR, DC = gln("20001"), gln("30001")
RETAILERS = {"R1": gln("40001"), "R2": gln("40002"), "R3": gln("40003")}
LEAF, TEA = "012345", "054321"
LEAF_A1, LEAF_B1 = lot(LEAF, "A1"), lot(LEAF, "B1")
TEA_T1, TEA_T2 = lot(TEA, "T1"), lot(TEA, "T2")
PALLET_1, PALLET_2 = sscc("0000000001"), sscc("0000000002")
PALLET_R1, PALLET_R2, PALLET_R3 = sscc("0000000011"), sscc("0000000012"), sscc("0000000013")
NAMES = {
    FARM_A: "安溪县感德镇茶园合作社",
    FARM_B: "武夷山星村镇茶场",
    PROCESSOR: "泉州茶叶加工厂",
    DC: "福州冷链物流配送中心",
    RETAILERS["R1"]: "福州鼓楼超市",
    RETAILERS["R2"]: "厦门思明超市",
    RETAILERS["R3"]: "莆田城厢便利店",
}


@dataclass(frozen=True)
class Step:
    hours: float
    event: dict[str, Any]


def _q(cls: str, quantity: float, uom: str | None = "KGM") -> dict[str, Any]:
    out: dict[str, Any] = {"epcClass": cls, "quantity": quantity}
    if uom:
        out["uom"] = uom
    return out


def _object(step: str, where: str, *, classes: list[dict[str, Any]] | None = None,
            epcs: list[str] | None = None, action: str = "OBSERVE",
            disposition: str | None = None, **more: Any) -> dict[str, Any]:  # fmt: skip
    event: dict[str, Any] = {"type": "ObjectEvent", "action": action, "bizStep": step,
                             "readPoint": {"id": where}, "bizLocation": {"id": where}}  # fmt: skip
    if epcs is not None:
        event["epcList"] = epcs
    if classes is not None:
        event["quantityList"] = classes
    if disposition:
        event["disposition"] = disposition
    event.update(more)
    return event


def _pack(
    parent: str, where: str, classes: list[dict[str, Any]], action: str = "ADD"
) -> dict[str, Any]:
    return {"type": "AggregationEvent", "action": action, "parentID": parent,
            "childQuantityList": classes, "bizStep": "packing" if action == "ADD" else "unpacking",
            "readPoint": {"id": where}, "bizLocation": {"id": where}}  # fmt: skip


def _ship(parent: str, origin: str, to: str) -> dict[str, Any]:
    return _object("shipping", origin, epcs=[parent], disposition="in_transit",
                   destinationList=[{"type": "location", "destination": to}],
                   sourceList=[{"type": "location", "source": origin}])  # fmt: skip


def _receive(parent: str, where: str) -> dict[str, Any]:
    return _object("receiving", where, epcs=[parent], disposition="in_progress")


def _cold(parent: str, where: str, temperatures: list[float]) -> dict[str, Any]:
    reports = [{"sensorMetadata": {"time": "PLACEHOLDER"},
                "sensorReport": [{"type": "Temperature", "value": t, "uom": "CEL"}]}
               for t in temperatures]  # fmt: skip
    return _object("transporting", where, epcs=[parent], sensorElementList=reports)


def steps(*, cold_break: bool = True) -> list[Step]:
    """The chain, hour by hour from the first harvest."""
    truck = [4.0, 5.5, 12.5 if cold_break else 6.0, 6.0]
    return [
        Step(
            0,
            _object(
                "commissioning",
                FARM_A,
                classes=[_q(LEAF_A1, 500)],
                action="ADD",
                ilmd={"example:harvestDate": "2024-04-01"},
            ),
        ),
        Step(1, _object("commissioning", FARM_B, classes=[_q(LEAF_B1, 300)], action="ADD")),
        Step(5, _object("shipping", FARM_A, classes=[_q(LEAF_A1, 500)], disposition="in_transit")),
        Step(6, _object("shipping", FARM_B, classes=[_q(LEAF_B1, 300)], disposition="in_transit")),
        Step(10, _object("receiving", PROCESSOR, classes=[_q(LEAF_A1, 500), _q(LEAF_B1, 300)])),
        Step(
            12,
            {
                "type": "TransformationEvent",
                "inputQuantityList": [_q(LEAF_A1, 400)],
                "outputQuantityList": [_q(TEA_T1, 380)],
                "bizStep": "commissioning",
                "readPoint": {"id": PROCESSOR},
                "bizLocation": {"id": PROCESSOR},
                "ilmd": {"example:bestBefore": "2026-04-01"},
            },
        ),
        Step(
            13,
            {
                "type": "TransformationEvent",
                "inputQuantityList": [_q(LEAF_A1, 100), _q(LEAF_B1, 300)],
                "outputQuantityList": [_q(TEA_T2, 390)],
                "bizStep": "commissioning",
                "readPoint": {"id": PROCESSOR},
                "bizLocation": {"id": PROCESSOR},
            },
        ),
        Step(
            14, _object("inspecting", PROCESSOR, classes=[_q(TEA_T1, 1)], disposition="conformant")
        ),
        Step(15, _pack(PALLET_1, PROCESSOR, [_q(TEA_T1, 380)])),
        Step(15.5, _pack(PALLET_2, PROCESSOR, [_q(TEA_T2, 390)])),
        Step(16, _ship(PALLET_1, PROCESSOR, DC)),
        Step(16.5, _ship(PALLET_2, PROCESSOR, DC)),
        Step(18, _cold(PALLET_1, PROCESSOR, truck)),
        Step(20, _receive(PALLET_1, DC)),
        Step(20.5, _receive(PALLET_2, DC)),
        Step(21, _pack(PALLET_1, DC, [_q(TEA_T1, 380)], action="DELETE")),
        Step(21.5, _pack(PALLET_R1, DC, [_q(TEA_T1, 200)])),
        Step(22, _pack(PALLET_R2, DC, [_q(TEA_T1, 180)])),
        Step(22.5, _pack(PALLET_2, DC, [_q(TEA_T2, 390)], action="DELETE")),
        Step(23, _pack(PALLET_R3, DC, [_q(TEA_T2, 390)])),
        Step(24, _ship(PALLET_R1, DC, RETAILERS["R1"])),
        Step(24.5, _ship(PALLET_R2, DC, RETAILERS["R2"])),
        Step(25, _ship(PALLET_R3, DC, RETAILERS["R3"])),
        Step(30, _receive(PALLET_R1, RETAILERS["R1"])),
        Step(31, _receive(PALLET_R2, RETAILERS["R2"])),
        Step(32, _receive(PALLET_R3, RETAILERS["R3"])),
        Step(33, _object("retail_selling", RETAILERS["R1"], classes=[_q(TEA_T1, 2, None)])),
    ]


START = datetime(2024, 4, 1, 0, 0, tzinfo=UTC)


def document(events: list[dict[str, Any]]) -> dict[str, Any]:
    """An EPCISDocument of events, with the example namespace and the locations' names as
    master data."""
    vocabulary = [{"type": "urn:epcglobal:epcis:vtype:BusinessLocation", "vocabularyElementList": [
        {"id": loc, "attributes": [{"id": "urn:epcglobal:cbv:mda#name", "attribute": name}]}
        for loc, name in NAMES.items()]}]  # fmt: skip
    return {
        "@context": [epcis.CONTEXT, {"example": "https://ns.example.cn/tea/"}],
        "type": "EPCISDocument", "schemaVersion": "2.0",
        "creationDate": START.isoformat().replace("+00:00", "Z"),
        "epcisHeader": {"epcisMasterData": {"vocabularyList": vocabulary}},
        "epcisBody": {"eventList": events},
    }  # fmt: skip


def chain(*, cold_break: bool = True, start: datetime = START) -> dict[str, Any]:
    """The whole chain as one EPCISDocument (times from `start`, China time)."""
    events = []
    for step in steps(cold_break=cold_break):
        when = start + timedelta(hours=step.hours)
        event = dict(step.event)
        event["eventTime"] = when.astimezone(_CHINA).isoformat(timespec="milliseconds")
        event["eventTimeZoneOffset"] = "+08:00"
        if "sensorElementList" in event:
            event["sensorElementList"] = [
                dict(e, sensorMetadata={"time": (when + timedelta(minutes=20 * i)).isoformat()})
                for i, e in enumerate(event["sensorElementList"])
            ]
        events.append(event)
    return document(events)


_CHINA = __import__("datetime").timezone(timedelta(hours=8))


def product_path(lot_urn: str) -> str:
    """The Digital Link path a lot's QR code carries (`/01/<gtin>/10/<lot>`)."""
    product = gs1.product_of(gs1.canonical(lot_urn))
    if product is None:
        raise ValueError(f"not a lot: {lot_urn}")
    return product.path
