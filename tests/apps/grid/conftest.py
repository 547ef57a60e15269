"""Grid fixtures: Gulou set up, photos with and without an EXIF location, department staff."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from minyun.accounts.models import User
from minyun.apps.grid import service
from minyun.apps.grid.photos import PhotoStore
from minyun.core.security import Principal
from minyun.orgs.models import Organization
from tests import factories

SYSTEM = Principal.system()
# 东街口 (Dongjiekou), in 东街街道's first community.
DONGJIEKOU = (26.0853, 119.3006)


def jpeg(*, gps: tuple[float, float] | None = None, size: tuple[int, int] = (640, 480)) -> bytes:
    """A JPEG photo, with an EXIF GPS position and camera tags when `gps` is given."""
    image = Image.new("RGB", size, (200, 60, 40))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0131] = "minyun-test"  # Software
    if gps is not None:
        lat, long = gps
        exif.get_ifd(0x8825).update({1: "N", 2: _dms(lat), 3: "E", 4: _dms(long)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def _dms(value: float) -> tuple[float, float, float]:
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60, 4)
    return (float(d), float(m), s)


def org(session: Session, code: str) -> Organization:
    return session.scalars(select(Organization).where(Organization.code == code)).one()


def staff(session: Session, code: str, **over: object) -> User:
    return factories.make_user(session, organization=org(session, code), **over)


def officer(session: Session, code: str) -> Principal:
    """A civil servant of the department `code`, without an account (no password hashing)."""
    found = org(session, code)
    return Principal(kind="user", name=f"officer-{code}", organization_id=found.id,
                     account_kind="staff")  # fmt: skip


@pytest.fixture
def sqlite_only(engine: Engine) -> None:
    """Cases of input checking: the rules are the same on both databases, run them once."""
    if engine.dialect.name != "sqlite":
        pytest.skip("input checks run on SQLite only")


@pytest.fixture
def gulou(session: Session) -> Session:
    service.load_gulou(session, SYSTEM)
    return session


@pytest.fixture
def store(tmp_path: Path) -> PhotoStore:
    return PhotoStore(str(tmp_path / "lake"))
