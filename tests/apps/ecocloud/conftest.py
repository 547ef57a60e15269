"""Eco-cloud fixtures: the real Fujian day as ingest rows, and a planted regional episode."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy.orm import Session

from minyun.apps.ecocloud import cnemc, ingest
from minyun.apps.ecocloud.cnemc import SAMPLE_DAY
from minyun.orgs.models import Organization
from tests import factories

DAY = SAMPLE_DAY
EPISODE_CITIES = ("福州市", "厦门市")
EPISODE_HOURS = tuple(f"2022-01-04T{h:02d}:00:00" for h in range(10, 15))
EPISODE_PM2_5 = "180"  # IAQI 230: 重度污染 (heavy), far above the real day's values


def real_rows() -> pa.Table:
    """The 24 real hours as ingest rows (1008 station-hours)."""
    return ingest.rows_from_cnemc(cnemc.read_cnemc(cnemc.cnemc_files(DAY)))


def plant_episode(rows: pa.Table) -> pa.Table:
    """PM2.5 raised to 180 µg/m³ at every station of Fuzhou and Xiamen, 10:00–14:00."""
    hit = pc.and_(
        pc.and_(
            pc.is_in(rows["city"], pa.array(EPISODE_CITIES)),
            pc.is_in(rows["hour"], pa.array(EPISODE_HOURS)),
        ),
        pc.is_valid(rows["pm2_5"]),  # a station that measured nothing still measured nothing
    )
    planted = pc.if_else(hit, EPISODE_PM2_5, rows["pm2_5"])
    return rows.set_column(rows.column_names.index("pm2_5"), "pm2_5", planted)


@pytest.fixture(scope="session")
def day_rows() -> pa.Table:
    return real_rows()


@pytest.fixture(scope="session")
def episode_rows(day_rows: pa.Table) -> pa.Table:
    return plant_episode(day_rows)


def make_city_eco_orgs(session: Session) -> dict[str, Organization]:
    """The environment departments of the two episode cities, coded as in the demo province."""
    province = factories.make_org(session, code="fj-eco", division_code="350000")
    return {
        "fj-eco": province,
        "fz-eco": factories.make_org(
            session, code="fz-eco", division_code="350100", parent_id=province.id, kind="unit"
        ),
        "xm-eco": factories.make_org(
            session, code="xm-eco", division_code="350200", parent_id=province.id, kind="unit"
        ),
    }
