"""The demo's market regulation register (一照一码): enterprises registered, changed and
deregistered by the market regulation bureaus, each change an event for every department
that keeps a copy.

The register is a control-plane table. Each change writes the register row, its audit record
and its event (`enterprise.registered`, `enterprise.changed`, `enterprise.deregistered`,
`core.events.publish`: the transactional outbox) in the caller's transaction, so a
department never hears of a change that did not happen, nor misses one that did.

Consumers (tax, social security, statistics in the demo) keep their copy in step with
`EnterpriseCopy`, fed by webhooks (Standard Webhooks, verified with `push.webhooks.Verifier`)
or by reading the log by offset (`GET /api/v1/events?after=…`). A copy applies each event
at most once and in order (it remembers the last offset it applied), so a redelivery after a
consumer was down changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from minyun.core import audit, clock, events, identifiers
from minyun.core.db import Base, UTCDateTime
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound
from minyun.core.security import Principal, Role
from minyun.orgs.models import Organization

# What a registration holds and a change may change.
CHANGEABLE = ("name", "legal_person", "address", "capital")
TEXT_LIMITS = {"name": 200, "legal_person": 100, "address": 300}


class EnterpriseStatus(StrEnum):
    REGISTERED = "registered"
    DEREGISTERED = "deregistered"


class Enterprise(Base):
    """One enterprise in the market regulation register, keyed by its credit code."""

    __tablename__ = "enterprise_register"

    uscc: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    legal_person: Mapped[str] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(300), default=None)
    capital: Mapped[int | None] = mapped_column(Integer, default=None)  # 万元
    status: Mapped[str] = mapped_column(String(16), default=EnterpriseStatus.REGISTERED)
    registrar_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    # Moves on with every change: a consumer's copy holds the version it last applied.
    version: Mapped[int] = mapped_column(Integer, default=1)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    deregistered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    def facts(self) -> dict[str, Any]:
        """The registration as events carry it and copies keep it."""
        return {
            "uscc": self.uscc, "name": self.name, "legal_person": self.legal_person,
            "address": self.address, "capital": self.capital, "status": self.status,
            "version": self.version,
        }  # fmt: skip


# --- who may ---------------------------------------------------------------------------------


def _registrar(session: Session, actor: Principal) -> Organization:
    """The market regulation bureau the actor registers for (its stewards and minyun itself)."""
    org = session.get(Organization, actor.organization_id) if actor.organization_id else None
    allowed = org is not None and (org.code == "fj-amr" or org.code.endswith("-amr"))
    if actor.kind == "system" and org is None:
        org = session.scalars(select(Organization).where(Organization.code == "fj-amr")).first()
        allowed = org is not None
    if org is None or not allowed or not (actor.kind == "system" or actor.has_role(Role.STEWARD)):
        error = Forbidden("only the market regulation bureaus' stewards keep the register")
        error.audit = audit.Pending(
            actor=actor, action="market.register", target_type="enterprise",
            outcome=audit.Outcome.DENIED, detail=str(error),
        )  # fmt: skip
        raise error
    return org


def _get(session: Session, uscc: str) -> Enterprise:
    found = session.get(Enterprise, uscc)
    if found is None:
        raise NotFound(f"no enterprise {uscc} in the register")
    return found


# --- changes ---------------------------------------------------------------------------------


def _text(name: str, value: Any, *, required: bool) -> str | None:
    text = str(value or "").strip()
    if not text:
        if required:
            raise Invalid(f"{name} is required", field=name)
        return None
    if len(text) > TEXT_LIMITS[name]:
        raise Invalid(f"{name} is longer than {TEXT_LIMITS[name]} characters", field=name)
    return text


def _capital(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10**9:
        raise Invalid("capital is a whole number of 万元 from 0 to 10^9", field="capital")
    return value


def register_enterprise(
    session: Session,
    actor: Principal,
    *,
    uscc: str,
    name: str,
    legal_person: str,
    address: str | None = None,
    capital: int | None = None,
) -> Enterprise:
    """Register an enterprise: its row, audit record and `enterprise.registered` event."""
    registrar = _registrar(session, actor)
    uscc = uscc.strip().upper()
    if not identifiers.is_valid_uscc(uscc):
        raise Invalid(f"{uscc!r} is not a valid unified social credit code", field="uscc")
    if session.get(Enterprise, uscc) is not None:
        raise Conflict(f"enterprise {uscc} is already registered", code="registered")
    enterprise = Enterprise(
        uscc=uscc, name=_text("name", name, required=True),
        legal_person=_text("legal_person", legal_person, required=True),
        address=_text("address", address, required=False), capital=_capital(capital),
        status=EnterpriseStatus.REGISTERED, registrar_id=registrar.id, version=1,
        registered_at=clock.now(),
    )  # fmt: skip
    session.add(enterprise)
    session.flush()
    _record(session, actor, "market.register", enterprise, "enterprise.registered", None)
    return enterprise


def change_enterprise(
    session: Session, actor: Principal, uscc: str, changes: Mapping[str, Any]
) -> Enterprise:
    """Change a registered enterprise's particulars; the event names what changed."""
    _registrar(session, actor)
    enterprise = _get(session, uscc)
    if enterprise.status != EnterpriseStatus.REGISTERED:
        raise Conflict(f"enterprise {uscc} is deregistered", code="deregistered")
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown:
        raise Invalid(f"{unknown[0]} cannot be changed", field=unknown[0])
    before = enterprise.facts()
    for name, value in changes.items():
        new = _capital(value) if name == "capital" else _text(
            name, value, required=name != "address"
        )  # fmt: skip
        setattr(enterprise, name, new)
    changed = [n for n in CHANGEABLE if getattr(enterprise, n) != before[n]]
    if not changed:
        raise Invalid("nothing changes", field="changes")
    enterprise.version += 1
    enterprise.changed_at = clock.now()
    session.flush()
    diff = {n: {"before": before[n], "after": getattr(enterprise, n)} for n in changed}
    _record(session, actor, "market.change", enterprise, "enterprise.changed", diff)
    return enterprise


def deregister_enterprise(
    session: Session, actor: Principal, uscc: str, *, reason: str
) -> Enterprise:
    """Deregister (注销) an enterprise; its row stays, with its status and the time."""
    _registrar(session, actor)
    enterprise = _get(session, uscc)
    if enterprise.status == EnterpriseStatus.DEREGISTERED:
        raise Conflict(f"enterprise {uscc} is deregistered", code="deregistered")
    why = str(reason or "").strip()
    if not why:
        raise Invalid("reason is required", field="reason")
    enterprise.status = EnterpriseStatus.DEREGISTERED
    enterprise.version += 1
    enterprise.deregistered_at = clock.now()
    session.flush()
    _record(session, actor, "market.deregister", enterprise, "enterprise.deregistered",
            {"reason": why[:500]})  # fmt: skip
    return enterprise


def _record(
    session: Session,
    actor: Principal,
    action: str,
    enterprise: Enterprise,
    kind: str,
    extra: dict[str, Any] | None,
) -> None:
    facts = enterprise.facts()
    data = {**facts, **({"changes": extra} if kind == "enterprise.changed" else extra or {})}
    event = events.publish(session, kind=kind, subject=enterprise.uscc, data=data)
    audit.record(
        session, actor, action, target=enterprise.uscc, target_type="enterprise",
        detail=f"event={event.offset}; version={enterprise.version}"
        + (f"; {sorted(extra)}" if extra else ""),
    )  # fmt: skip


def register_snapshot(session: Session) -> dict[str, dict[str, Any]]:
    """The whole register as copies keep it (tests and the demo compare against it)."""
    return {e.uscc: e.facts() for e in session.scalars(select(Enterprise))}


DEMO_NAMES = ("闽江", "鼓山", "武夷", "湄洲", "三坊", "榕城", "鹭岛", "清源", "冠豸", "太姥")
DEMO_TRADES = ("科技", "贸易", "茶业", "食品", "物流")


def demo_story(session: Session, *, count: int = 20) -> dict[str, int]:
    """The demo's register: `count` enterprises registered in Fuzhou, three changed, one
    deregistered, each with its event and audit record (idempotent: skipped when done)."""
    if session.scalars(select(Enterprise.uscc).limit(1)).first() is not None:
        return {"registered": 0}
    actor = Principal.system(on_behalf_of="demo")
    codes = []
    for n in range(count):
        name = f"福州{DEMO_NAMES[n % 10]}{DEMO_TRADES[n % 5]}有限公司"
        uscc = identifiers.make_uscc("9", "1", "350100", f"MA{n + 1:06d}")
        register_enterprise(session, actor, uscc=uscc, name=name, legal_person=f"林{n + 1:02d}",
                            address="福州市鼓楼区五四路", capital=50 * (n + 1))  # fmt: skip
        codes.append(uscc)
    change_enterprise(session, actor, codes[0], {"address": "福州市仓山区南江滨西大道"})
    change_enterprise(session, actor, codes[1], {"name": "福州鼓山数字科技有限公司"})
    change_enterprise(session, actor, codes[2], {"capital": 5000})
    deregister_enterprise(session, actor, codes[3], reason="股东会决议解散")
    return {"registered": count, "changed": 3, "deregistered": 1}


# --- a consumer's copy -----------------------------------------------------------------------


@dataclass
class EnterpriseCopy:
    """A department's copy of the register, kept in step by the events it receives."""

    department: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_offset: int = 0
    applied: int = 0
    skipped: int = 0  # redeliveries and events older than the copy

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Apply one event (an `EventOut.payload()`); False when it was already applied."""
        offset = int(event["offset"])
        if offset <= self.last_offset:
            self.skipped += 1
            return False
        kind, data = str(event["type"]), dict(event.get("data") or {})
        if kind.startswith("enterprise."):
            facts = {k: data.get(k) for k in ("uscc", *CHANGEABLE, "status", "version")}
            self.rows[str(event["subject"])] = facts
        self.last_offset = offset
        self.applied += 1
        return True

    def apply_all(self, received: Iterable[Mapping[str, Any]]) -> None:
        for event in sorted(received, key=lambda e: int(e["offset"])):
            self.apply(event)
