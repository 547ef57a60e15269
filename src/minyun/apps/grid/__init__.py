"""Grid governance (网格化治理, S12): grids, reports with photos, routing, Open311 GeoReport v2."""
