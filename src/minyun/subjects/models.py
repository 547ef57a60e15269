"""Subjects (一人一档 / 一企一档): which source row is about which subject, and how that changed.

A subject is the set of source rows linked to its id; ids are stable across runs (a cluster
keeps its id when it grows). `SubjectChange` records every creation, merge and split,
`SubjectReview` the uncertain pairs waiting for a steward, `SubjectModel` the trained
linkage model of each kind, `SubjectRun` each resolution run.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime


class SubjectKind(StrEnum):
    PERSON = "person"
    ENTERPRISE = "enterprise"


class ChangeKind(StrEnum):
    CREATED = "created"
    GROWN = "grown"
    MERGED = "merged"  # `other_id` was merged into `subject_id`
    SPLIT = "split"  # `subject_id` was split off `other_id`


class ReviewStatus(StrEnum):
    OPEN = "open"
    CONFIRMED = "confirmed"  # one subject
    SPLIT = "split"  # two subjects


class SubjectLink(Base):
    """One source row and the subject it is about."""

    __tablename__ = "subject_links"
    __table_args__ = (
        UniqueConstraint("resource", "row_key"),
        Index("ix_subject_links_subject", "subject_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), index=True)
    resource: Mapped[str] = mapped_column(String(64))
    row_key: Mapped[str] = mapped_column(String(200))
    subject_id: Mapped[str] = mapped_column(String(16))
    row_hash: Mapped[int] = mapped_column(BigInteger)  # of the row's linking fields
    # A keyed hash of the row's identity number or credit code: how a person finds their file.
    ident: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    lake_version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int] = mapped_column(Integer)


class SubjectChange(Base):
    """A subject created, grown, merged or split by a run or a steward's decision."""

    __tablename__ = "subject_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Integer, index=True, default=None)
    kind: Mapped[str] = mapped_column(String(12))
    subject_id: Mapped[str] = mapped_column(String(16), index=True)
    other_id: Mapped[str | None] = mapped_column(String(16), index=True, default=None)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class SubjectModel(Base):
    """A trained linkage model (Splink settings with its m and u probabilities)."""

    __tablename__ = "subject_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), index=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    trained_on: Mapped[int] = mapped_column(Integer)  # rows
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class SubjectRun(Base):
    """One resolution run: what it read, linked and changed."""

    __tablename__ = "subject_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    engine: Mapped[str] = mapped_column(String(12))
    mode: Mapped[str] = mapped_column(String(12))  # full, incremental, unchanged
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SubjectReview(Base):
    """An uncertain pair (between the two thresholds) waiting for a steward's decision."""

    __tablename__ = "subject_reviews"
    __table_args__ = (UniqueConstraint("left_uid", "right_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), index=True)
    left_uid: Mapped[str] = mapped_column(String(270))  # resource|row_key
    right_uid: Mapped[str] = mapped_column(String(270))
    match_probability: Mapped[float] = mapped_column(Float)
    match_weight: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12), default=ReviewStatus.OPEN, index=True)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(100), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
