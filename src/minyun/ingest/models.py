"""Loads into the lake: each committed load is a `Version` with its lineage and quality.

The models live with the resource in `minyun.catalog.models` (the resource page lists its
versions, and the catalog imports nothing of `ingest`); they are named here too.
"""

from minyun.catalog.models import LoadMode, LoadState, Version

__all__ = ["LoadMode", "LoadState", "Version"]
