"""Food traceability pages: the product page of a Digital Link, the supervisor's views."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["food pages"])
