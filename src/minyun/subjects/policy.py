"""The data subject's policy: a person or enterprise reads the rows linked to itself.

Registered on `core.policies.DATA_SUBJECTS` (imported by `minyun.handlers`, so every process
has it). A citizen's account is real-name by identity number, an enterprise's by credit
code; the resolution job stores a keyed hash of each row's number (`SubjectLink.ident`).
The verdict opens, in clear, only the rows of this resource linked to the account's own
subjects (a row filter on the primary key); anything else → no answer.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts.models import User
from minyun.core import policies
from minyun.core.reading import reader_secret
from minyun.core.security import Principal
from minyun.subjects.models import SubjectLink

__all__ = ["ident_hash", "own_subjects", "subject_verdict"]

_MAX_ROWS = 500


def ident_hash(session: Session, value: str) -> str:
    """The keyed hash the resolution job stores for an identity number or credit code."""
    return hashlib.sha256((reader_secret(session).hex() + value.upper()).encode()).hexdigest()


def own_subjects(session: Session, actor: Principal) -> list[str]:
    """The subject ids of a citizen's or enterprise's own account (none for others)."""
    if actor.kind != "user" or actor.user_id is None:
        return []
    if actor.account_kind not in ("citizen", "enterprise"):
        return []
    user = session.get(User, actor.user_id)
    value = None if user is None else (user.ric if actor.account_kind == "citizen" else user.uscc)
    if not value:
        return []
    found = session.scalars(
        select(SubjectLink.subject_id).where(SubjectLink.ident == ident_hash(session, value))
    )
    return sorted(set(found))


def subject_verdict(
    session: Session, actor: Principal, action: str, resource: policies.DataResource
) -> policies.Verdict | None:
    """The rows of `resource` linked to the account's own subjects, in clear; else no answer."""
    if action != policies.READ or not resource.primary_key:
        return None
    subjects = own_subjects(session, actor)
    if not subjects:
        return None
    keys = session.scalars(
        select(SubjectLink.row_key)
        .where(SubjectLink.subject_id.in_(subjects), SubjectLink.resource == resource.code)
        .limit(_MAX_ROWS)
    ).all()
    if not keys:
        return None
    row_filter = _rows_filter(list(resource.primary_key), list(keys))
    if row_filter is None:
        return None
    return policies.Verdict(
        "data-subject", "secret", row_filter=row_filter,
        reason="the data subject's own records",
    )  # fmt: skip


def _rows_filter(primary_key: list[str], keys: list[str]) -> str | None:
    """The filter-language text selecting the rows with these row keys (a composite key's
    values joined by "|", as the resolution job writes them); None if none fits the key."""

    def name(field_name: str) -> str:
        return '"' + field_name.replace('"', '""') + '"'

    def lit(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    if len(primary_key) == 1:
        return f"{name(primary_key[0])} in ({', '.join(lit(k) for k in keys)})"
    parts = [k.split("|") for k in keys]
    rows = [
        "("
        + " and ".join(f"{name(f)} = {lit(v)}" for f, v in zip(primary_key, p, strict=True))
        + ")"
        for p in parts
        if len(p) == len(primary_key)  # a value holding "|" cannot be told apart: not opened
    ]
    return " or ".join(rows) if rows else None


if subject_verdict not in policies.DATA_SUBJECTS.checks:
    policies.DATA_SUBJECTS.register(subject_verdict)
