"""E-licences (电子证照): types, issuers' keys, status lists, licences and their uses."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime
from minyun.orgs.models import Organization


class HolderKind(StrEnum):
    PERSON = "person"  # a natural person, by resident identity number (cn-ric)
    ENTERPRISE = "enterprise"  # a legal person, by unified social credit code (cn-uscc)


class LicenceStatus(StrEnum):
    LIVE = "live"
    SUSPENDED = "suspended"
    REVOKED = "revoked"  # by the issuer, or its source row deregistered or deleted
    SUPERSEDED = "superseded"  # re-issued after its source row changed


# A licence in one of these counts as the live one of its source row (at most one).
CURRENT = (LicenceStatus.LIVE, LicenceStatus.SUSPENDED)


class KeyStatus(StrEnum):
    ACTIVE = "active"  # signs new licences
    ROTATED = "rotated"  # signs nothing more; licences it signed before rotation verify
    RETIRED = "retired"  # withdrawn (compromised): what it signed no longer verifies


class LicenceType(Base):
    """A kind of licence (证照类型) an issuing department defines over one of its resources."""

    __tablename__ = "licence_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    issuer_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    holder_kind: Mapped[str] = mapped_column(String(12))
    # The licence's fields: a Table Schema (core.tableschema) whose names are source columns.
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str | None] = mapped_column(String(100), index=True, default=None)
    holder_field: Mapped[str] = mapped_column(String(64))
    holder_name_field: Mapped[str | None] = mapped_column(String(64), default=None)
    number_field: Mapped[str | None] = mapped_column(String(64), default=None)
    # {"valid_from": field?, "valid_until": field?, "years": n?, "revoke_when": {field: [values]}}
    validity: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    template: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    # The lake version of `source` the licences reflect (issuance resumes after it).
    source_version: Mapped[int | None] = mapped_column(Integer, default=None)

    issuer: Mapped[Organization] = relationship(lazy="joined")


class IssuerKey(Base):
    """An issuing department's signing key; the private half is derived from the node key."""

    __tablename__ = "licence_issuer_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    kid: Mapped[str] = mapped_column(String(64))  # the fragment of its DID URL: key-<generation>
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default=KeyStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    __table_args__ = (Index("ix_licence_issuer_keys_org_generation", "organization_id",
                            "generation", unique=True),)  # fmt: skip


class StatusList(Base):
    """One issuer's Bitstring Status List for one purpose (revocation or suspension)."""

    __tablename__ = "licence_status_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    purpose: Mapped[str] = mapped_column(String(12))
    bits: Mapped[bytes] = mapped_column(LargeBinary)
    next_index: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    __table_args__ = (Index("ix_licence_status_lists_org_purpose", "organization_id", "purpose",
                            unique=True),)  # fmt: skip


class Licence(Base):
    """One issued licence: the signed credential, its holder, its source row and its status."""

    __tablename__ = "licences"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type_id: Mapped[int] = mapped_column(ForeignKey("licence_types.id"), index=True)
    holder_id: Mapped[str] = mapped_column(String(18), index=True)
    holder_name: Mapped[str | None] = mapped_column(String(200), default=None)
    number: Mapped[str] = mapped_column(String(100))
    source_key: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64))  # of the subject's data: a change re-issues
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default=LicenceStatus.LIVE, index=True)
    status_index: Mapped[int] = mapped_column(Integer)
    kid: Mapped[str] = mapped_column(String(64))
    credential: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    source_version: Mapped[int | None] = mapped_column(Integer, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    end_reason: Mapped[str | None] = mapped_column(Text, default=None)
    replaced_by: Mapped[str | None] = mapped_column(String(40), default=None)

    type: Mapped[LicenceType] = relationship(lazy="joined")

    __table_args__ = (
        # Never two live licences for one source row: the database refuses the second.
        Index(
            "ux_licences_current_source", "type_id", "source_key", unique=True,
            sqlite_where=text("status IN ('live', 'suspended')"),
            postgresql_where=text("status IN ('live', 'suspended')"),
        ),
        Index("ix_licences_type_source", "type_id", "source_key"),
    )  # fmt: skip


class LicenceUse(Base):
    """Someone used or looked at a licence: the holder sees who looked, statistics count it."""

    __tablename__ = "licence_uses"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), index=True)
    type_id: Mapped[int] = mapped_column(Integer, index=True)
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id"), default=None
    )
    actor: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # fetch (a department, by grant), verify
    purpose: Mapped[str | None] = mapped_column(Text, default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
