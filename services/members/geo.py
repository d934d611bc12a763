"""Distances on the Earth (haversine) and the bounding box that prefilters them in SQL."""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Box:
    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float
    #: False when the box crosses a pole or the antimeridian: filter on latitude only
    lon_bounded: bool

    def contains(self, lat: float, lon: float) -> bool:
        if not self.min_lat <= lat <= self.max_lat:
            return False
        return not self.lon_bounded or self.min_lon <= lon <= self.max_lon


def bounding_box(lat: float, lon: float, radius_km: float) -> Box:
    """A box holding every point within `radius_km` of (lat, lon), a little larger."""
    # 0.1 % slack absorbs floating-point error at the box's edge
    dlat = math.degrees(radius_km * 1.001 / EARTH_RADIUS_KM)
    min_lat, max_lat = lat - dlat, lat + dlat
    if min_lat <= -90 or max_lat >= 90:
        return Box(max(min_lat, -90.0), min(max_lat, 90.0), -180.0, 180.0, False)
    # the widest longitude span is at the latitude where the circle is tangent to a meridian
    ratio = math.sin(math.radians(dlat)) / math.cos(math.radians(lat))
    if ratio >= 1:
        return Box(min_lat, max_lat, -180.0, 180.0, False)
    dlon = math.degrees(math.asin(ratio))
    min_lon, max_lon = lon - dlon, lon + dlon
    if min_lon < -180 or max_lon > 180:
        return Box(min_lat, max_lat, -180.0, 180.0, False)
    return Box(min_lat, max_lat, min_lon, max_lon, True)
