"""Open data portal pages (公共数据开放平台): browse, search, a dataset, domains, the API."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
