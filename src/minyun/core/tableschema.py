"""A resource's schema: a Frictionless Table Schema plus the minyun keys, and its lake types.

The descriptor is checked twice: by the `frictionless` package (the standard's own rules:
types, constraints, primaryKey) and here (the minyun keys: `sensitivity`, `mask`,
`codelist`, `link` and the formats `cn-ric` / `cn-uscc`). Every error names the field.

A field's `mask` is checked by `core.masks.parse_mask` and kept in its normal form
(`"partial"` becomes `"keep(3,4)"`), so two schemas that name one mask differently are the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import frictionless
import pyarrow as pa

from minyun.core import sqlcheck
from minyun.core.errors import Invalid
from minyun.core.masks import parse_mask

__all__ = [
    "FORMATS",
    "LINK_KINDS",
    "SENSITIVITIES",
    "SQL_TYPES",
    "TYPES",
    "Field",
    "TableSchema",
    "arrow_schema",
    "check_loadable",
    "compatibility",
    "constant_sql",
    "parse_schema",
]

# The Table Schema types a lake column can hold, with their Arrow type.
TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "time": pa.time64("us"),
    "year": pa.int32(),
}
# The same types in DuckDB, where every load casts and checks its rows.
SQL_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMPTZ",
    "time": "TIME",
    "year": "INTEGER",
}
SENSITIVITIES = ("public", "internal", "sensitive", "secret")
# Formats minyun checks itself; frictionless knows the others (email, uri, uuid, ...).
MINYUN_FORMATS = ("cn-ric", "cn-uscc")
FORMATS = (*MINYUN_FORMATS, "default", "email", "uri", "uuid", "binary", "wkt", "any")
# A wider type holds every value of the narrower one without loss.
_WIDER: dict[str, set[str]] = {"integer": {"number", "string"}, "year": {"integer", "number"}}
_MINYUN_KEYS = ("sensitivity", "mask", "codelist", "link")
# What a field holds for entity resolution (`minyun.subjects`), with the types it may have.
LINK_KINDS: dict[str, tuple[str, ...]] = {
    "person.ric": ("string",),
    "person.name": ("string",),
    "person.birth_date": ("date", "string"),
    "person.sex": ("string",),
    "person.phone": ("string",),
    "person.address": ("string",),
    "enterprise.uscc": ("string",),
    "enterprise.name": ("string",),
    "enterprise.address": ("string",),
    "enterprise.legal_person_ric": ("string",),
}


@dataclass(frozen=True)
class Field:
    """One column: its type, constraints and the minyun governance keys."""

    name: str
    type: str = "string"
    title: str | None = None
    description: str | None = None
    required: bool = False
    unique: bool = False
    enum: list[Any] | None = None
    pattern: str | None = None
    minimum: Any = None
    maximum: Any = None
    min_length: int | None = None
    max_length: int | None = None
    format: str | None = None
    codelist: list[str] | str | None = None
    sensitivity: str = "internal"
    mask: str | None = None  # the normal form of the spec (core.masks), e.g. "keep(3,4)"
    link: str | None = None  # what the field holds for entity resolution, e.g. "person.ric"


@dataclass(frozen=True)
class TableSchema:
    """The fields in order and the primary key."""

    fields: tuple[Field, ...]
    primary_key: tuple[str, ...] = field(default_factory=tuple)

    def field(self, name: str) -> Field:
        """The field called `name`; Invalid if there is none."""
        for f in self.fields:
            if f.name == name:
                return f
        raise Invalid(f"the schema has no field {name!r}", field=name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def links(self) -> dict[str, str]:
        """The linking fields: link kind (`person.ric`, ...) → field name."""
        return {f.link: f.name for f in self.fields if f.link is not None}

    @property
    def subject_kind(self) -> str | None:
        """`person` or `enterprise` when the schema has linking fields, else None."""
        kinds = {link.split(".")[0] for link in self.links}
        return next(iter(kinds)) if kinds else None


def parse_schema(descriptor: Mapping[str, Any]) -> TableSchema:
    """Check a Table Schema descriptor with frictionless and the minyun rules; Invalid if bad."""
    if not isinstance(descriptor, Mapping) or not isinstance(descriptor.get("fields"), list):
        raise Invalid("a schema needs a list of fields", field="fields")
    raw_fields = descriptor["fields"]
    if not raw_fields:
        raise Invalid("a schema needs at least one field", field="fields")
    standard = dict(descriptor)
    standard["fields"] = [_standard_part(f, i) for i, f in enumerate(raw_fields)]
    report = frictionless.Schema.validate_descriptor(standard)
    if not report.valid:
        raise Invalid(f"invalid table schema: {_first_error(report, raw_fields)}", field="schema")
    fields = tuple(_parse_field(f) for f in raw_fields)
    names = [f.name for f in fields]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise Invalid(f"field {duplicated[0]!r} is defined twice", field=duplicated[0])
    _check_links(fields)
    pk = descriptor.get("primaryKey") or []
    primary_key = (pk,) if isinstance(pk, str) else tuple(pk)
    for name in primary_key:
        if name not in names:
            raise Invalid(f"primary key field {name!r} is not in the schema", field=name)
    return TableSchema(fields=fields, primary_key=primary_key)


def constant_sql(f: Field, value: Any) -> str:
    """A constraint's value (a minimum, a maximum, an allowed value) as the load compares the
    field with it: a SQL constant of the field's type."""
    if (
        f.type in ("integer", "number", "year")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return repr(value)
    return f"CAST({_lit(value)} AS {SQL_TYPES[f.type]})"


def check_loadable(schema: TableSchema) -> TableSchema:
    """The schema; Invalid, naming the field, if a load could not use a constraint: a pattern DuckDB's
    regular-expression engine (RE2, no back-references or look-arounds) refuses, or a
    minimum, maximum or allowed value that is not a value of the field's type.

    Each is tried in DuckDB as the load writes it (`ingest.validate`), so what passes here
    compiles in every load. Asked when a schema is set, and by each load (a schema saved
    before this check gets the same message instead of a failure inside the load's SQL).
    """
    for f in schema.fields:
        if f.pattern is not None:
            why = sqlcheck.refusal(f"regexp_full_match('', {_lit(f.pattern)})")
            if why is not None:
                raise Invalid(
                    f"field {f.name!r}: pattern {f.pattern!r} is not one DuckDB's regular "
                    f"expressions (RE2) can match: {_reason(why)}",
                    field=f.name,
                )
        bounds = [("minimum", f.minimum), ("maximum", f.maximum)]
        for key, value in [*bounds, *(("allowed value", v) for v in f.enum or [])]:
            if value is None and key != "allowed value":
                continue
            if sqlcheck.refusal(constant_sql(f, value)) is not None:
                raise Invalid(
                    f"field {f.name!r}: {key} {value!r} is not a {f.type} value", field=f.name
                )
    return schema


def _reason(message: str) -> str:
    # DuckDB says "Invalid Input Error: invalid escape sequence: \1": keep what RE2 said.
    return message.split("Error: ", 1)[-1]


def _lit(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _standard_part(raw: Any, index: int) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise Invalid(f"field {index + 1} needs a name", field=f"fields[{index}]")
    part = {k: v for k, v in raw.items() if k not in _MINYUN_KEYS}
    if part.get("format") in MINYUN_FORMATS:
        del part["format"]
    return part


def _first_error(report: frictionless.Report, raw_fields: list[Any]) -> str:
    error = report.errors[0]
    message = str(error.message)
    # frictionless says "field type "x" is not supported"; name the field it belongs to.
    for raw in raw_fields:
        if f'"{raw.get("type")}"' in message:
            return f"field {raw['name']!r}: {message}"
    return message


def _parse_field(raw: Mapping[str, Any]) -> Field:
    name = str(raw["name"])
    type_ = str(raw.get("type", "string"))
    if type_ not in TYPES:
        raise Invalid(
            f"field {name!r} has type {type_!r}; minyun stores {', '.join(TYPES)}", field=name
        )
    c = raw.get("constraints") or {}
    fmt = raw.get("format")
    if fmt in MINYUN_FORMATS and type_ != "string":
        raise Invalid(f"field {name!r}: format {fmt} needs type string", field=name)
    sensitivity = raw.get("sensitivity", "internal")
    if sensitivity not in SENSITIVITIES:
        raise Invalid(
            f"field {name!r}: sensitivity must be one of {', '.join(SENSITIVITIES)}", field=name
        )
    mask = _parse_mask(name, type_, raw.get("mask"))
    codelist = raw.get("codelist")
    if codelist is not None and not (
        isinstance(codelist, str)
        or (isinstance(codelist, list) and all(isinstance(v, str) for v in codelist))
    ):
        raise Invalid(
            f"field {name!r}: codelist must be a list of codes or a code table name", field=name
        )
    pattern = c.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise Invalid(
                f"field {name!r}: pattern is not a regular expression", field=name
            ) from exc
    return Field(
        name=name,
        type=type_,
        title=raw.get("title"),
        description=raw.get("description"),
        required=bool(c.get("required", False)),
        unique=bool(c.get("unique", False)),
        enum=list(c["enum"]) if c.get("enum") is not None else None,
        pattern=pattern,
        minimum=c.get("minimum"),
        maximum=c.get("maximum"),
        min_length=c.get("minLength"),
        max_length=c.get("maxLength"),
        format=fmt,
        codelist=codelist,
        sensitivity=sensitivity,
        mask=mask,
        link=_parse_link(name, type_, raw.get("link")),
    )


def _parse_link(name: str, type_: str, link: Any) -> str | None:
    """The field's `link` kind; Invalid naming the field if unknown or of the wrong type."""
    if link is None:
        return None
    if not isinstance(link, str) or link not in LINK_KINDS:
        raise Invalid(f"field {name!r}: link must be one of {', '.join(LINK_KINDS)}", field=name)
    if type_ not in LINK_KINDS[link]:
        raise Invalid(
            f"field {name!r}: link {link} needs type {' or '.join(LINK_KINDS[link])}", field=name
        )
    return link


def _check_links(fields: tuple[Field, ...]) -> None:
    """One field per link kind, and one subject kind (person or enterprise) per schema."""
    seen: dict[str, str] = {}
    for f in fields:
        if f.link is None:
            continue
        if f.link in seen:
            raise Invalid(
                f"field {f.name!r}: link {f.link} is already on field {seen[f.link]!r}",
                field=f.name,
            )
        seen[f.link] = f.name
    kinds = {link.split(".")[0] for link in seen}
    if len(kinds) > 1:
        last = next(f for f in reversed(fields) if f.link is not None)
        raise Invalid(
            f"field {last.name!r}: a schema links persons or enterprises, not both",
            field=last.name,
        )


def _parse_mask(name: str, type_: str, spec: Any) -> str | None:
    """The mask's normal spec; Invalid naming the field if it is bad or does not fit the type."""
    if spec is None:
        return None
    try:
        mask = parse_mask(spec)
    except Invalid as exc:
        raise Invalid(f"field {name!r}: {exc}", field=name) from exc
    if type_ not in mask.types:
        raise Invalid(
            f"field {name!r}: mask {mask.spec} applies to {', '.join(sorted(mask.types))},"
            f" not {type_}",
            field=name,
        )
    return mask.spec


def arrow_schema(ts: TableSchema) -> pa.Schema:
    """The lake columns: one Arrow field per schema field; primary-key fields not null."""
    return pa.schema(
        [pa.field(f.name, TYPES[f.type], nullable=f.name not in ts.primary_key) for f in ts.fields]
    )


def compatibility(old: TableSchema, new: TableSchema) -> Literal["same", "compatible", "major"]:
    """How `new` relates to `old`: readers of `old` break only on a major change."""
    if old == new:
        return "same"
    if old.primary_key != new.primary_key:
        return "major"
    new_by_name = {f.name: f for f in new.fields}
    for before in old.fields:
        after = new_by_name.get(before.name)
        if after is None or _narrower(before, after):
            return "major"
    old_names = {f.name for f in old.fields}
    if any(f.required for f in new.fields if f.name not in old_names):
        return "major"  # old data has no value for a new required field
    return "compatible"


def _narrower(before: Field, after: Field) -> bool:
    """Whether `after` refuses some value `before` accepted (type or constraint narrowed)."""
    if before.type != after.type and after.type not in _WIDER.get(before.type, set()):
        return True
    if after.required and not before.required:
        return True
    if after.unique and not before.unique:
        return True
    if after.enum is not None and (before.enum is None or not set(before.enum) <= set(after.enum)):
        return True
    if (
        after.codelist is not None
        and before.codelist != after.codelist
        and not (
            isinstance(before.codelist, list)
            and isinstance(after.codelist, list)
            and set(before.codelist) <= set(after.codelist)
        )
    ):
        return True
    if after.pattern is not None and after.pattern != before.pattern:
        return True
    if after.format != before.format and after.format is not None:
        return True
    for low_new, low_old in (
        (after.minimum, before.minimum),
        (after.min_length, before.min_length),
    ):
        if low_new is not None and (low_old is None or low_new > low_old):
            return True
    for high_new, high_old in (
        (after.maximum, before.maximum),
        (after.max_length, before.max_length),
    ):
        if high_new is not None and (high_old is None or high_new < high_old):
            return True
    return False
