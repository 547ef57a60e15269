"""The web forms of the steward's pages: resource metadata and the schema editor, as plain data.

A schema travels through the editor as one row per field: what the steward edits (name,
title, type, format, required, key, sensitivity, mask) in inputs of its own, and whatever
else the field carries (description, constraints such as enum or pattern, codelist) in a
hidden JSON part, so an edit never drops a rule the form does not show. The service checks
the descriptor the rows make (`core.tableschema.parse_schema`); nothing here decides a rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from minyun.core.tableschema import SENSITIVITIES, TYPES

# The fields of the metadata form (create and edit), in the order the form shows them.
METADATA = (
    "code", "name", "provider", "summary", "theme", "base_library", "format", "update_cycle",
    "sharing_type", "sharing_condition", "open_type", "open_condition", "legal_basis",
)  # fmt: skip
FORMATS = ("", "cn-ric", "cn-uscc", "email", "uri", "uuid")
MASKS = (
    "", "keep(3,4)", "keep(6,4)", "keep(1,1)", "name", "address(city)", "address(county)",
    "date(year)", "date(month)", "pseudonym", "null",
)  # fmt: skip
RESOURCE_FORMATS = ("table", "file", "api", "stream")
MAX_ROWS = 500
# The keys a row edits itself; the rest of a field's descriptor rides in its hidden part.
_EDITED = ("name", "title", "type", "format", "sensitivity", "mask")
_EDITED_CONSTRAINTS = ("required",)


@dataclass(frozen=True)
class FieldRow:
    """One field of the schema editor."""

    name: str = ""
    title: str = ""
    type: str = "string"
    format: str = ""
    required: bool = False
    key: bool = False
    sensitivity: str = "internal"
    mask: str = ""
    keep: bool = True  # unticked: the field is left out of the schema
    rest: str = "{}"  # the field's other keys (JSON)
    example: str = ""  # a value from the sample, shown beside the field
    error: str | None = None

    @property
    def rest_summary(self) -> str:
        """The other rules of the field, short (shown read-only beside it)."""
        try:
            rest = json.loads(self.rest)
        except ValueError:
            return ""
        parts = []
        for k, v in (rest.get("constraints") or {}).items():
            parts.append(f"{k}={json.dumps(v, ensure_ascii=False)}")
        for k in ("codelist", "link", "description"):
            if rest.get(k):
                parts.append(f"{k}={json.dumps(rest[k], ensure_ascii=False)}")
        return "; ".join(parts)


@dataclass
class SchemaForm:
    """The editor's rows and the form-wide error (one that names no row)."""

    rows: list[FieldRow] = field(default_factory=list)
    error: str | None = None

    def descriptor(self) -> dict[str, Any]:
        """The Table Schema the kept rows make (checked by the service, not here)."""
        fields = [_field(r) for r in self.rows if r.keep]
        out: dict[str, Any] = {"fields": fields}
        key = [r.name.strip() for r in self.rows if r.keep and r.key]
        if key:
            out["primaryKey"] = key
        return out

    def blame(self, field_name: str | None, message: str) -> None:
        """Show `message` beside the row of `field_name`, else above the editor."""
        kept = 0
        for i, row in enumerate(self.rows):
            if not row.keep:
                continue
            if field_name and field_name in (row.name.strip(), f"fields[{kept}]"):
                self.rows[i] = replace(row, error=message)
                return
            kept += 1
        self.error = message


def rows_from_descriptor(
    descriptor: Mapping[str, Any] | None, examples: Mapping[str, str | None] | None = None
) -> list[FieldRow]:
    """The editor's rows for a schema (the current one, or one inferred from a sample)."""
    if not descriptor:
        return []
    pk = descriptor.get("primaryKey") or []
    keys = {pk} if isinstance(pk, str) else set(pk)
    rows = []
    for f in descriptor.get("fields") or []:
        if not isinstance(f, Mapping):
            continue
        constraints = dict(f.get("constraints") or {})
        rest = {k: v for k, v in f.items() if k not in (*_EDITED, "constraints")}
        other = {k: v for k, v in constraints.items() if k not in _EDITED_CONSTRAINTS}
        if other:
            rest["constraints"] = other
        fmt = str(f.get("format") or "")
        example = (examples or {}).get(str(f.get("name")))
        rows.append(
            FieldRow(
                name=str(f.get("name") or ""),
                title=str(f.get("title") or ""),
                type=str(f.get("type") or "string"),
                format="" if fmt == "default" else fmt,
                required=bool(constraints.get("required")),
                key=f.get("name") in keys,
                sensitivity=str(f.get("sensitivity") or "internal"),
                mask=str(f.get("mask") or ""),
                rest=json.dumps(rest, ensure_ascii=False, sort_keys=True),
                example="" if example is None else str(example)[:200],
            )
        )
    return rows


def rows_from_form(form: Mapping[str, Any]) -> SchemaForm:
    """The editor's rows as the browser sent them (`f<i>.<part>`), in order."""
    try:
        count = min(int(str(form.get("field_count") or 0)), MAX_ROWS)
    except ValueError:
        count = 0
    out = SchemaForm()
    for i in range(max(count, 0)):

        def text(part: str, default: str = "") -> str:
            value = form.get(f"f{i}.{part}")  # noqa: B023 - used at once
            return value.strip() if isinstance(value, str) else default

        def ticked(part: str) -> bool:
            return form.get(f"f{i}.{part}") is not None  # noqa: B023 - used at once

        out.rows.append(
            FieldRow(
                name=text("name"),
                title=text("title"),
                type=text("type", "string") or "string",
                format=text("format"),
                required=ticked("required"),
                key=ticked("key"),
                sensitivity=text("sensitivity", "internal") or "internal",
                mask=text("mask"),
                keep=ticked("keep"),
                rest=text("rest", "{}") or "{}",
                example=text("example"),
            )
        )
    return out


def _field(row: FieldRow) -> dict[str, Any]:
    try:
        rest = json.loads(row.rest)
    except ValueError:
        rest = {}
    if not isinstance(rest, dict):
        rest = {}
    out: dict[str, Any] = {"name": row.name, "type": row.type}
    if row.title:
        out["title"] = row.title
    if row.format:
        out["format"] = row.format
    out["sensitivity"] = row.sensitivity
    if row.mask:
        out["mask"] = row.mask
    for k, v in rest.items():
        if k not in (*_EDITED, "constraints"):
            out[k] = v
    constraints = (
        dict(rest.get("constraints") or {}) if isinstance(rest.get("constraints"), dict) else {}
    )
    if row.required:
        constraints["required"] = True
    if constraints:
        out["constraints"] = constraints
    return out


def choices() -> dict[str, tuple[str, ...]]:
    """The values the editor's selects offer."""
    return {
        "types": tuple(TYPES),
        "formats": FORMATS,
        "sensitivities": SENSITIVITIES,
        "masks": MASKS,
        "resource_formats": RESOURCE_FORMATS,
    }


def metadata_from_form(form: Mapping[str, Any]) -> dict[str, str]:
    """The metadata fields as sent (trimmed text; missing ones empty)."""
    out = {}
    for name in METADATA:
        value = form.get(name)
        out[name] = value.strip() if isinstance(value, str) else ""
    return out
