"""The EPCIS 2.0 query language (REST binding parameters) → SQL over the event index.

`parse` turns the query string's parameters into a `Query` (refusing an unknown
parameter or a value of the wrong type with `QueryParameterException`), `where` turns it
into SQLAlchemy conditions on `FoodEvent` with one EXISTS per repeated fact
(`FoodEventTerm`), so each parameter is ANDed and its values ORed, as the standard says.
Lists are pipe-delimited (`eventType=ObjectEvent|AggregationEvent`) or repeated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true

from minyun.apps.food import epcis, gs1
from minyun.apps.food.models import FoodEvent, FoodEventTerm
from minyun.core.errors import Invalid

PAGING = {"perPage", "nextPageToken"}
PER_PAGE_DEFAULT = 30
PER_PAGE_MAX = 1000

_EPC_MATCH = {
    "MATCH_epc": ("epc", "childEPC"),
    "MATCH_parentID": ("parentID",),
    "MATCH_inputEPC": ("inputEPC",),
    "MATCH_outputEPC": ("outputEPC",),
    "MATCH_anyEPC": ("epc", "childEPC", "inputEPC", "outputEPC", "parentID"),
    "MATCH_epcClass": ("epcClass", "childEPCClass"),
    "MATCH_inputEPCClass": ("inputEPCClass",),
    "MATCH_outputEPCClass": ("outputEPCClass",),
    "MATCH_anyEPCClass": ("epcClass", "childEPCClass", "inputEPCClass", "outputEPCClass"),
}
ALL_IDS = (*_EPC_MATCH["MATCH_anyEPC"], *_EPC_MATCH["MATCH_anyEPCClass"])
_COLUMNS: dict[str, tuple[str, Callable[[str], str]]] = {
    "EQ_action": ("action", str.upper),
    "EQ_bizStep": ("biz_step", lambda v: epcis.cbv_short("bizStep", v)),
    "EQ_disposition": ("disposition", lambda v: epcis.cbv_short("disposition", v)),
    "EQ_readPoint": ("read_point", gs1.canonical),
    "WD_readPoint": ("read_point", gs1.canonical),
    "EQ_bizLocation": ("biz_location", gs1.canonical),
    "WD_bizLocation": ("biz_location", gs1.canonical),
    "EQ_transformationID": ("transformation_id", str),
    "EQ_eventID": ("event_id", str),
    "EQ_errorReason": ("error_reason", lambda v: epcis.cbv_short("errorReason", v)),
}
_TIMES = {
    "GE_eventTime": ("event_time", ">="),
    "LT_eventTime": ("event_time", "<"),
    "GE_recordTime": ("record_time", ">="),
    "LT_recordTime": ("record_time", "<"),
    "GE_errorDeclarationTime": ("error_time", ">="),
    "LT_errorDeclarationTime": ("error_time", "<"),
}
_SENSOR_TIMES = {
    "GE_startTime": ("sensor:startTime", ">="),
    "LT_startTime": ("sensor:startTime", "<"),
    "GE_endTime": ("sensor:endTime", ">="),
    "LT_endTime": ("sensor:endTime", "<"),
}
_TERM_EQ = {
    "EQ_type": "type",
    "EQ_deviceID": "deviceID",
    "EQ_dataProcessingMethod": "dataProcessingMethod",
    "EQ_microorganism": "microorganism",
    "EQ_chemicalSubstance": "chemicalSubstance",
    "EQ_bizRules": "bizRules",
    "EQ_stringValue": "stringValue",
    "EQ_hexBinaryValue": "hexBinaryValue",
    "EQ_uriValue": "uriValue",
    "EQ_correctiveEventID": "correctiveEventID",
    "EQ_persistentDisposition_set": "persistentDisposition:set",
    "EQ_persistentDisposition_unset": "persistentDisposition:unset",
}
_OPS = {"EQ": "==", "GT": ">", "GE": ">=", "LT": "<", "LE": "<="}
_NUMERIC = re.compile(r"^(EQ|GT|GE|LT|LE)_(value|minValue|maxValue|meanValue)_(.+)$")
_TYPED = re.compile(r"^EQ_(bizTransaction|source|destination)_(.+)$")
_QUANTITY = re.compile(r"^(EQ|GT|GE|LT|LE)_quantity$")
_ILMD = re.compile(r"^EQ_ILMD_(.+)$")


def refuse(detail: str) -> Invalid:
    """The binding's QueryParameterException (400)."""
    return Invalid(detail, code="QueryParameterException", field="query")


@dataclass
class Query:
    """A parsed query: SQL conditions, order, limits, and the canonical parameters (the
    named query's definition and the paging token's binding)."""

    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    order_by: str = "event_time"
    descending: bool = False
    event_count_limit: int | None = None
    max_event_count: int | None = None
    params: dict[str, list[str]] = field(default_factory=dict)


def values_of(raw: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Parameters with their pipe-delimited or repeated values, paging left out."""
    out: dict[str, list[str]] = {}
    for name, values in raw.items():
        if name in PAGING:
            continue
        items = [v for value in values for v in str(value).split("|") if v != ""]
        out[name] = out.get(name, []) + items
    return out


def parse(raw: Mapping[str, Sequence[str]]) -> Query:
    """The query of these parameters, or QueryParameterException."""
    query = Query(params=values_of(raw))
    for name, values in sorted(query.params.items()):
        if not values:
            raise refuse(f"{name}: no value")
        query.conditions.append(_condition(query, name, values))
    return query


def _condition(query: Query, name: str, values: list[str]) -> ColumnElement[bool]:
    if name == "eventType":
        unknown = [v for v in values if v not in epcis.EVENT_TYPES]
        if unknown:
            raise refuse(f"eventType: unknown event type {unknown[0]!r}")
        return FoodEvent.event_type.in_(values)
    if name in _COLUMNS:
        column, norm = _COLUMNS[name]
        found: ColumnElement[bool] = getattr(FoodEvent, column).in_([norm(v) for v in values])
        return found
    if name in _TIMES:
        column, op = _TIMES[name]
        return _compare(getattr(FoodEvent, column), op, _time(name, values))
    if name in _EPC_MATCH:
        return _any_term(_EPC_MATCH[name], [_pattern(v) for v in values])
    if name in _TERM_EQ:
        return _term(_TERM_EQ[name], values)
    if name in _SENSOR_TIMES:
        kind, op = _SENSOR_TIMES[name]
        when = _time(name, values).isoformat()
        return _exists(kind, _compare(FoodEventTerm.value, op, when))
    if name == "EQ_booleanValue":
        return _term("booleanValue", [_boolean(name, values).__str__().lower()])
    if name == "EXISTS_errorDeclaration":
        wanted = _boolean(name, values)
        return FoodEvent.error_time.is_not(None) if wanted else true()
    return _special(query, name, values)


def _special(query: Query, name: str, values: list[str]) -> ColumnElement[bool]:
    if name in ("orderBy", "orderDirection", "eventCountLimit", "maxEventCount"):
        _control(query, name, values[-1])
        return true()
    if m := _NUMERIC.match(name):
        op, stat, kind = m.groups()
        number = _number(name, values)
        return _exists(f"{stat}:{kind}", _compare(FoodEventTerm.number, _OPS[op], number))
    if m := _QUANTITY.match(name):
        number = _number(name, values)
        kinds = _EPC_MATCH["MATCH_anyEPCClass"]
        return _exists(kinds, _compare(FoodEventTerm.number, _OPS[m.group(1)], number))
    if m := _TYPED.match(name):
        field_, kind = m.groups()
        kind = epcis.cbv_short("bizTransactionType" if field_ == "bizTransaction"
                               else "sourceDestType", kind)  # fmt: skip
        norm = str if field_ == "bizTransaction" else gs1.canonical
        return _term(f"{field_}:{kind}", [norm(v) for v in values])
    if m := _ILMD.match(name):
        return _term(f"ilmd:{m.group(1)}", values)
    raise refuse(f"unknown query parameter {name!r}")


def _control(query: Query, name: str, value: str) -> None:
    if name == "orderBy":
        if value not in ("eventTime", "recordTime"):
            raise refuse("orderBy: eventTime or recordTime")
        query.order_by = "event_time" if value == "eventTime" else "record_time"
    elif name == "orderDirection":
        if value not in ("ASC", "DESC"):
            raise refuse("orderDirection: ASC or DESC")
        query.descending = value == "DESC"
    else:
        if not value.isdigit() or int(value) < 1:
            raise refuse(f"{name}: a positive integer")
        setattr(query, "event_count_limit" if name == "eventCountLimit" else "max_event_count",
                int(value))  # fmt: skip
    if query.event_count_limit and query.max_event_count:
        raise refuse("eventCountLimit and maxEventCount cannot be given together")


def _pattern(value: str) -> tuple[str, bool]:
    """A canonical identifier, or a prefix for a pattern (`urn:epc:idpat:sgtin:…*`)."""
    if value.startswith("urn:epc:idpat:"):
        dl = gs1.urn_to_dl(value)
        if dl is None:
            raise refuse(f"not an EPC pattern: {value}")
        return dl + "/", True
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value):
        raise refuse(f"not a URI: {value}")
    return gs1.canonical(value), False


def _any_term(kinds: Sequence[str], patterns: list[tuple[str, bool]]) -> ColumnElement[bool]:
    exact = [p for p, prefix in patterns if not prefix]
    prefixes = [p for p, prefix in patterns if prefix]
    options: list[ColumnElement[bool]] = []
    if exact:
        options.append(FoodEventTerm.value.in_(exact))
    options.extend(FoodEventTerm.value.startswith(p, autoescape=True) for p in prefixes)
    return _exists(kinds, or_(*options))


def _term(kind: str, values: list[str]) -> ColumnElement[bool]:
    return _exists(kind, FoodEventTerm.value.in_(values))


def _exists(kind: str | Sequence[str], condition: ColumnElement[bool]) -> ColumnElement[bool]:
    kinds = [kind] if isinstance(kind, str) else list(kind)
    test = FoodEventTerm.kind == kinds[0] if len(kinds) == 1 else FoodEventTerm.kind.in_(kinds)
    return exists(
        select(FoodEventTerm.id).where(FoodEventTerm.event_pk == FoodEvent.id, test, condition)
    )


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool] = {
        "==": lambda: column == value,
        ">": lambda: column > value,
        ">=": lambda: column >= value,
        "<": lambda: column < value,
        "<=": lambda: column <= value,
    }[op]()
    return result


def _time(name: str, values: list[str]) -> datetime:
    try:
        return epcis.parse_time(values[-1])
    except ValueError as exc:
        raise refuse(f"{name}: {exc}") from exc


def _number(name: str, values: list[str]) -> float:
    try:
        return float(values[-1])
    except ValueError as exc:
        raise refuse(f"{name}: not a number: {values[-1]!r}") from exc


def _boolean(name: str, values: list[str]) -> bool:
    if values[-1] not in ("true", "false"):
        raise refuse(f"{name}: true or false")
    return values[-1] == "true"


def nothing() -> ColumnElement[bool]:
    """A condition no event meets."""
    return false()


def combined(query: Query) -> ColumnElement[bool]:
    """Every condition of the query, ANDed."""
    return and_(true(), *query.conditions)
