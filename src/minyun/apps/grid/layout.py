"""The demo's grid layout of Gulou district (鼓楼区, 350102), Fuzhou.

The street (街道) and town (镇) names and their statistical division codes are Gulou's real
ones, and each sits roughly where it is on the map (东街口 in 东街街道, 三坊七巷 in 南街街道,
西湖 in 鼓西街道, 温泉公园 in 温泉街道, 洪山镇 to the west). The outlines are a plausible
layout, not the official boundaries: each street is a block of the district's bounding box,
split into communities (社区, names of real Gulou communities) in strips, each community
into four grids (网格). Pure data and geometry: no database here.
"""

from __future__ import annotations

from dataclasses import dataclass

from shapely.geometry import Polygon, box, mapping

DISTRICT = "350102"
DISTRICT_NAME = "鼓楼区"
CITY = "350100"

# Longitude and latitude bands of the blocks (WGS-84).
_LON = (119.255, 119.280, 119.295, 119.310, 119.325)
_LAT = (26.060, 26.078, 26.092, 26.110, 26.130)


def _block(col0: int, col1: int, row0: int, row1: int) -> Polygon:
    """Columns col0..col1 and rows row0..row1 of the band table (inclusive), south to north."""
    return box(_LON[col0], _LAT[row0], _LON[col1 + 1], _LAT[row1 + 1])


# code (统计用区划代码, 9 digits), name, block, communities (west to east)
STREETS: list[tuple[str, str, Polygon, list[str]]] = [
    ("350102001", "鼓东街道", _block(2, 2, 2, 2), ["旗汛口社区", "虎节社区", "钱塘社区"]),
    ("350102002", "鼓西街道", _block(1, 1, 2, 2), ["西湖社区", "杨桥社区", "观风亭社区"]),
    ("350102003", "温泉街道", _block(3, 3, 2, 3), ["温泉社区", "汤井社区", "井大社区"]),
    ("350102004", "东街街道", _block(2, 2, 1, 1), ["三牧坊社区", "仙塔社区"]),
    ("350102005", "南街街道", _block(1, 1, 1, 1), ["宫巷社区", "光禄坊社区"]),
    ("350102006", "安泰街道", _block(1, 2, 0, 0), ["朱紫坊社区", "双抛社区", "庄巷社区"]),
    ("350102007", "华大街道", _block(2, 2, 3, 3), ["华大社区", "屏西社区", "湖前社区"]),
    ("350102008", "水部街道", _block(3, 3, 0, 1), ["水部社区", "琼东社区", "斗池社区"]),
    ("350102009", "五凤街道", _block(1, 1, 3, 3), ["五凤社区", "树兜社区", "梅峰社区"]),
    ("350102100", "洪山镇", _block(0, 0, 0, 3), ["洪山社区", "凤湖社区", "西洪社区", "铜盘社区"]),
]
GRIDS_PER_COMMUNITY = 4


@dataclass(frozen=True)
class AreaSpec:
    code: str
    name: str
    level: str
    parent_code: str | None
    outline: Polygon

    def geometry(self) -> dict[str, object]:
        return dict(mapping(self.outline))


def _strips(outline: Polygon, count: int) -> list[Polygon]:
    """The outline cut into `count` equal strips, west to east."""
    x0, y0, x1, y1 = outline.bounds
    step = (x1 - x0) / count
    return [box(x0 + i * step, y0, x0 + (i + 1) * step, y1) for i in range(count)]


def _quarters(outline: Polygon) -> list[Polygon]:
    """The outline cut in four: south-west, south-east, north-west, north-east."""
    x0, y0, x1, y1 = outline.bounds
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    return [box(x0, y0, xm, ym), box(xm, y0, x1, ym), box(x0, ym, xm, y1), box(xm, ym, x1, y1)]


def gulou() -> list[AreaSpec]:
    """Every street, community and grid of the demo layout, parents before children."""
    areas: list[AreaSpec] = []
    for street_code, street_name, outline, communities in STREETS:
        areas.append(AreaSpec(street_code, street_name, "street", None, outline))
        for c, (name, strip) in enumerate(
            zip(communities, _strips(outline, len(communities)), strict=True), start=1
        ):
            community_code = f"{street_code}{c:03d}"
            areas.append(AreaSpec(community_code, name, "community", street_code, strip))
            for g, cell in enumerate(_quarters(strip), start=1):
                areas.append(
                    AreaSpec(f"{community_code}{g:02d}", f"{name}第{g}网格", "grid",
                             community_code, cell)
                )  # fmt: skip
    return areas


def district_outline() -> Polygon:
    """The outline of the whole demo district (the union of its streets' blocks)."""
    return box(_LON[0], _LAT[0], _LON[-1], _LAT[-1])
