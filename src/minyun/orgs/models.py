"""Administrative divisions (GB/T 2260) and the organisations under them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime


class Level(StrEnum):
    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"
    TOWNSHIP = "township"
    VILLAGE = "village"


class Division(Base):
    """One administrative division: 6 digits to county level, 9 for townships, 12 for villages."""

    __tablename__ = "divisions"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(10), index=True)
    parent_code: Mapped[str | None] = mapped_column(
        ForeignKey("divisions.code"), index=True, default=None
    )


class OrgKind(StrEnum):
    DEPARTMENT = "department"  # 部门
    UNIT = "unit"  # 单位 under a department


class Organization(Base):
    """A department or unit (部门/单位), identified by its unified social credit code."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(12), default=OrgKind.DEPARTMENT)
    division_code: Mapped[str] = mapped_column(ForeignKey("divisions.code"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    division: Mapped[Division] = relationship(lazy="joined")

    @property
    def level(self) -> str:
        return self.division.level
