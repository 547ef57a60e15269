"""EPCIS 2.0 documents: schema validation, CBV values, the event hash ID, index terms.

Pure functions over the JSON an EPCIS client sends; no database, no HTTP.

- `validate_document`: the official JSON schema (`data/EPCIS-JSON-Schema.json`, draft-07)
  with the `jsonschema` library; `date-time` and `uri` formats are checked here (RFC 3339
  with a zone; an absolute URI), since the schema leaves formats to the validator. The
  same schema compiled by jsonschema-rs answers first: a document it accepts is accepted
  (about 100 times faster); anything else is judged by `jsonschema`, whose errors are the
  refusal's. `tests/apps/food/test_food_epcis.py` checks the two agree; a time the RFC
  allows and Python cannot read (a leap second) is refused by the capture.
- `event_hash_id`: CBV 2.0 §8.9 — the canonical pre-hash string of an event (its type,
  then its properties in the standard order, values normalised: times in UTC at
  millisecond precision, EPC URNs as Digital Links, CBV URNs and bare CBV words as Web
  URIs, lists sorted, extensions last) hashed with SHA-256 as `ni:///sha-256;…?ver=CBV2.0`.
- `terms`: what the query index keeps of an event (identifiers in canonical form).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jsonschema
import jsonschema_rs

from minyun.apps.food import gs1

EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
)
EPCIS_VERSION = "2.0.0"
CBV_VERSION = "2.0.0"
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")

# CBV vocabularies: the URN prefix, the Web URI prefix, and the JSON key that holds a value.
VOCABULARIES = {
    "bizStep": ("urn:epcglobal:cbv:bizstep:", "BizStep-"),
    "disposition": ("urn:epcglobal:cbv:disp:", "Disp-"),
    "bizTransactionType": ("urn:epcglobal:cbv:btt:", "BTT-"),
    "sourceDestType": ("urn:epcglobal:cbv:sdt:", "SDT-"),
    "errorReason": ("urn:epcglobal:cbv:er:", "ER-"),
}
CBV_WEB = "https://ref.gs1.org/cbv/"
_WEB_ALIASES = ("https://ref.gs1.org/cbv/", "https://ns.gs1.org/cbv/", "https://gs1.org/voc/")


class DocumentError(ValueError):
    """A document the schema refuses: each error with where it is."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors[:5]))
        self.errors = errors


def parse_time(text: str) -> datetime:
    """An EPCIS time (RFC 3339 with a zone) as an aware UTC datetime; ValueError if not one."""
    if not isinstance(text, str) or not _TIME.match(text):
        raise ValueError(f"not an RFC 3339 time with a zone: {text!r}")
    value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    return value.astimezone(UTC)


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        parse_time(value)
    except ValueError:
        return False
    return True


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI.match(value))


@cache
def schema() -> dict[str, Any]:
    """The official EPCIS 2.0 JSON schema."""
    text = resources.files("minyun.apps.food").joinpath("data/EPCIS-JSON-Schema.json")
    loaded: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator() -> jsonschema.protocols.Validator:
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_is_time)
    checker.checks("uri")(_is_uri)
    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    validator: jsonschema.protocols.Validator = cls(schema(), format_checker=checker)
    return validator


@cache
def _fast() -> Any:
    """The same schema compiled by jsonschema-rs with its own `date-time` (RFC 3339) and
    `uri` (RFC 3986) checks, all in Rust (about 400 times faster than `jsonschema`; Python
    format functions called back from Rust cost it three quarters of its time): it only
    says yes quickly; every refusal and its reasons come from `jsonschema`."""
    return jsonschema_rs.validator_for(schema(), validate_formats=True)


def validate_document(doc: Any) -> None:
    """Raise DocumentError unless `doc` is an EPCISDocument or EPCISQueryDocument the official
    schema accepts."""
    if not isinstance(doc, dict):
        raise DocumentError(["the body is not a JSON object"])
    if doc.get("type") not in ("EPCISDocument", "EPCISQueryDocument"):
        raise DocumentError(["type: must be EPCISDocument or EPCISQueryDocument"])
    if _fast().is_valid(doc):
        return
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        raise DocumentError([_say(e) for e in errors])


def _say(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(document)"
    leaf = error
    while leaf.context:  # anyOf / oneOf: the deepest reason says most
        leaf = max(leaf.context, key=lambda e: len(list(e.absolute_path)))
    return f"{where}: {leaf.message}"[:500]


def events_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of an EPCISDocument or an EPCISQueryDocument, as sent."""
    body = doc.get("epcisBody") or {}
    if "queryResults" in body:
        body = (body["queryResults"] or {}).get("resultsBody") or {}
    return list(body.get("eventList") or [])


# --- CBV values ---------------------------------------------------------------------------


@lru_cache(maxsize=4096)  # a few values repeat in every event
def cbv_short(kind: str, value: str) -> str:
    """A CBV value as the bare word the JSON-LD context uses (`shipping`), whichever form it
    came in (URN, Web URI); a non-CBV URI stays as it is."""
    urn, web = VOCABULARIES[kind]
    if value.startswith(urn):
        return value.removeprefix(urn)
    for root in _WEB_ALIASES:
        if value.startswith(root + web) or value.lower().startswith((root + web).lower()):
            return value[len(root + web) :]
    return value


def cbv_web(kind: str, value: str) -> str:
    """A CBV value as its Web URI (the event hash's form); a non-CBV URI unchanged."""
    short = cbv_short(kind, value)
    return short if ":" in short else CBV_WEB + VOCABULARIES[kind][1] + short


# --- the event hash ID (CBV 2.0 §8.9) ------------------------------------------------------

_QUANTITY = ("epcClass", "quantity", "uom")
_METADATA = ("time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData",
             "dataProcessingMethod", "bizRules")  # fmt: skip
_REPORT = ("type", "exception", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod",
           "time", "microorganism", "chemicalSubstance", "value", "component", "stringValue",
           "booleanValue", "hexBinaryValue", "uriValue", "minValue", "maxValue", "meanValue",
           "sDev", "percRank", "percValue", "uom", "coordinateReferenceSystem")  # fmt: skip
_ORDER = ("eventTime", "eventTimeZoneOffset", "epcList", "parentID", "inputEPCList", "childEPCs",
          "quantityList", "childQuantityList", "inputQuantityList", "outputEPCList",
          "outputQuantityList", "action", "transformationID", "bizStep", "disposition",
          "persistentDisposition", "readPoint", "bizLocation", "bizTransactionList", "sourceList",
          "destinationList", "sensorElementList", "ilmd")  # fmt: skip
_SKIPPED = {"type", "eventID", "recordTime", "@context", "certificationInfo", "errorDeclaration"}


def _number(value: Any) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _hash_time(text: str) -> str:
    try:
        value = parse_time(text)
    except ValueError:
        return text
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return _number(value)
    text = str(value).strip()
    if key.lower().endswith("time") and "offset" not in key.lower():
        return _hash_time(text)
    for kind, (urn, _) in VOCABULARIES.items():
        if text.startswith(urn):
            return cbv_web(kind, text)
    return gs1.canonical(text)


def _pairs(obj: Mapping[str, Any], order: tuple[str, ...]) -> str:
    return "".join(f"{k}={_value(k, obj[k])}" for k in order if obj.get(k) not in (None, ""))


def _extension(key: str, value: Any, context: Mapping[str, str]) -> str:
    name = _expand(key, context)
    if isinstance(value, dict):
        inner = sorted(_extension(k, v, context) for k, v in value.items() if k != "@context")
        return name + "".join(inner)
    if isinstance(value, list):
        return "".join(sorted(_extension(key, v, context) for v in value))
    return f"{name}={_value(key, value)}"


def _expand(key: str, context: Mapping[str, str]) -> str:
    prefix, sep, local = key.partition(":")
    if sep and prefix in context:
        return context[prefix] + local
    return key


def prehash(event: Mapping[str, Any], context: Mapping[str, str] | None = None) -> str:
    """The canonical pre-hash string of an event (CBV 2.0 §8.9)."""
    ctx = dict(context or {})
    out = [f"eventType={event['type']}"]
    for key in _ORDER:
        value = event.get(key)
        if value in (None, "", [], {}):
            continue
        if key in ("eventTime", "eventTimeZoneOffset", "parentID", "action", "transformationID"):
            out.append(f"{key}={_value(key, value)}")
        elif key in ("bizStep", "disposition"):
            out.append(f"{key}={cbv_web(key, value)}")
        elif key.endswith("EPCList") or key in ("epcList", "childEPCs"):
            out.append(key + "".join(sorted(f"epc={_value('epc', v)}" for v in value)))
        elif key.endswith("QuantityList") or key == "quantityList":
            items = sorted("quantityElement" + _pairs(q, _QUANTITY) for q in value)
            out.append(key + "".join(items))
        elif key == "persistentDisposition":
            parts = [f"{part}={cbv_web('disposition', v)}" for part in ("set", "unset")
                     for v in sorted(value.get(part) or [])]  # fmt: skip
            out.append(key + "".join(parts))
        elif key in ("readPoint", "bizLocation"):
            out.append(f"{key}id={_value('id', value['id'])}")
        elif key in ("bizTransactionList", "sourceList", "destinationList"):
            out.append(key + "".join(sorted(_typed(key, v) for v in value)))
        elif key == "sensorElementList":
            out.append(key + "".join(sorted(_sensor(e) for e in value)))
        elif key == "ilmd":
            out.append(key + "".join(sorted(_extension(k, v, ctx) for k, v in value.items())))
    rest = [
        _extension(k, v, ctx) for k, v in event.items() if k not in _SKIPPED and k not in _ORDER
    ]
    out.extend(sorted(rest))
    return "".join(out)


def _typed(key: str, item: Mapping[str, Any]) -> str:
    field = {"bizTransactionList": "bizTransaction", "sourceList": "source",
             "destinationList": "destination"}[key]  # fmt: skip
    kind = "bizTransactionType" if field == "bizTransaction" else "sourceDestType"
    typ = f"type={cbv_web(kind, item['type'])}" if item.get("type") else ""
    return f"{field}={_value(field, item[field])}{typ}"


def _sensor(element: Mapping[str, Any]) -> str:
    text = "sensorElement"
    if element.get("sensorMetadata"):
        text += "sensorMetadata" + _pairs(element["sensorMetadata"], _METADATA)
    reports = sorted("sensorReport" + _pairs(r, _REPORT) for r in element.get("sensorReport", []))
    return text + "".join(reports)


def context_prefixes(doc: Mapping[str, Any]) -> dict[str, str]:
    """The namespace prefixes a document's @context declares (`{"example": "http://…/"}`)."""
    raw = doc.get("@context")
    found: dict[str, str] = {}
    for item in raw if isinstance(raw, list) else [raw]:
        if isinstance(item, dict):
            found.update({k: v for k, v in item.items() if isinstance(v, str)})
    return found


def event_hash_id(event: Mapping[str, Any], context: Mapping[str, str] | None = None) -> str:
    """The CBV 2.0 hash-based eventID of an event."""
    digest = hashlib.sha256(prehash(event, context).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"


# --- what the query index keeps ------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One searchable fact of an event: a kind (`epc`, `bizTransaction:po`, …), a text value
    and, for quantities and sensor values, a number."""

    kind: str
    value: str
    number: float | None = None


_EPC_ROLES = {"epcList": "epc", "childEPCs": "childEPC", "inputEPCList": "inputEPC",
              "outputEPCList": "outputEPC"}  # fmt: skip
_CLASS_ROLES = {"quantityList": "epcClass", "childQuantityList": "childEPCClass",
                "inputQuantityList": "inputEPCClass", "outputQuantityList": "outputEPCClass"}  # fmt: skip


def terms(event: Mapping[str, Any]) -> Iterator[Term]:
    """The index terms of an event: identifiers canonical, CBV values short."""
    for key, role in _EPC_ROLES.items():
        for epc in event.get(key) or []:
            yield Term(role, gs1.canonical(epc))
    if event.get("parentID"):
        yield Term("parentID", gs1.canonical(event["parentID"]))
    for key, role in _CLASS_ROLES.items():
        for q in event.get(key) or []:
            number = float(q["quantity"]) if q.get("quantity") is not None else None
            yield Term(role, gs1.canonical(q["epcClass"]), number)
    for item in event.get("bizTransactionList") or []:
        kind = cbv_short("bizTransactionType", item.get("type", "")) or "*"
        yield Term(f"bizTransaction:{kind}", item["bizTransaction"])
    for key, field in (("sourceList", "source"), ("destinationList", "destination")):
        for item in event.get(key) or []:
            kind = cbv_short("sourceDestType", item.get("type", "")) or "*"
            yield Term(f"{field}:{kind}", gs1.canonical(item[field]))
    pd = event.get("persistentDisposition") or {}
    for part in ("set", "unset"):
        for value in pd.get(part) or []:
            yield Term(f"persistentDisposition:{part}", cbv_short("disposition", value))
    error = event.get("errorDeclaration") or {}
    for corrective in error.get("correctiveEventIDs") or []:
        yield Term("correctiveEventID", corrective)
    for key, value in (event.get("ilmd") or {}).items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            yield Term(f"ilmd:{key}", str(value), _float(value))
    yield from _sensor_terms(event)


def _sensor_terms(event: Mapping[str, Any]) -> Iterator[Term]:
    for element in event.get("sensorElementList") or []:
        meta = element.get("sensorMetadata") or {}
        for key in ("deviceID", "dataProcessingMethod", "bizRules"):
            if meta.get(key):
                yield Term(key, meta[key])
        for key in ("startTime", "endTime", "time"):
            if meta.get(key):
                yield Term(f"sensor:{key}", parse_time(meta[key]).isoformat())
        for report in element.get("sensorReport") or []:
            kind = str(report.get("type", ""))
            if kind:
                yield Term("type", kind)
            for key in ("deviceID", "dataProcessingMethod", "microorganism", "chemicalSubstance",
                        "stringValue", "hexBinaryValue", "uriValue"):  # fmt: skip
                if report.get(key):
                    yield Term(key, str(report[key]))
            if "booleanValue" in report:
                yield Term("booleanValue", "true" if report["booleanValue"] else "false")
            for key in ("value", "minValue", "maxValue", "meanValue"):
                if report.get(key) is not None:
                    yield Term(f"{key}:{kind}", _number(report[key]), float(report[key]))


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
