"""Nodes (省市互联): the other minyun instances this one trusts, and what passes between them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime
from minyun.orgs.models import Organization


class NodeStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class Relation(StrEnum):
    PARENT = "parent"  # the province, seen from a city: its catalog goes up there
    CHILD = "child"  # a city, seen from the province: it publishes its catalog here


class Node(Base):
    """Another minyun instance: its id (the key id of its signatures), key, address, status."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    division_code: Mapped[str] = mapped_column(String(12))
    relation: Mapped[str] = mapped_column(String(8))
    public_key: Mapped[str] = mapped_column(Text)  # Ed25519, raw 32 bytes base64url
    base_url: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(8), default=NodeStatus.ACTIVE, index=True)
    added_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    revoked_by: Mapped[str | None] = mapped_column(String(100), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoke_reason: Mapped[str | None] = mapped_column(Text, default=None)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class NodeNonce(Base):
    """A signature nonce seen from a node, kept until its signature could no longer be used."""

    __tablename__ = "node_nonces"

    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class NodeResource(Base):
    """A resource a child node published upward: the province catalog's entry for it."""

    __tablename__ = "node_resources"
    __table_args__ = (UniqueConstraint("node_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    provider_code: Mapped[str] = mapped_column(String(32))
    provider_name: Mapped[str] = mapped_column(String(200))
    sharing_type: Mapped[str] = mapped_column(String(16))
    update_cycle: Mapped[str | None] = mapped_column(String(16), default=None)
    fields: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # name, title, type, sensitivity
    listed: Mapped[bool] = mapped_column(default=True)  # False once the node stops publishing it
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    node: Mapped[Node] = relationship(lazy="joined")


class NodeApplication(Base):
    """A consumer department's application for another node's resource, as sent to it.

    The node that provides the resource decides (its `Application` and `Grant` are the
    authority); this row remembers what was sent and the last answer heard.
    """

    __tablename__ = "node_applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    resource_code: Mapped[str] = mapped_column(String(64))
    consumer_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    applicant: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(Text)
    fields: Mapped[list[str]] = mapped_column(JSON)
    remote_id: Mapped[int] = mapped_column(Integer)  # the application's id on the node
    status: Mapped[str] = mapped_column(String(12))
    decision_reason: Mapped[str | None] = mapped_column(Text, default=None)
    granted_fields: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    node: Mapped[Node] = relationship(lazy="joined")
    consumer: Mapped[Organization] = relationship(lazy="joined")


class NodeOrganization(Base):
    """A department of another node, known here because that node applied on its behalf."""

    __tablename__ = "node_organizations"

    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    remote_code: Mapped[str] = mapped_column(String(32))

    organization: Mapped[Organization] = relationship(lazy="joined")
