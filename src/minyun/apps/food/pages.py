"""Food traceability pages: a product's page by its Digital Link, the inspection worklist,
recall tracing. Phone first: one column of stages, tables that scroll inside their box."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from minyun.apps.food import product, risk, trace
from minyun.core.errors import DomainError, Invalid
from minyun.web.deps import SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import PageActorDep, render

router = APIRouter(include_in_schema=False)

STAGE_LABELS = {
    "production": N_("Production"),
    "processing": N_("Processing"),
    "inspection": N_("Inspection"),
    "transport": N_("Transport"),
    "receiving": N_("Receiving"),
    "retail": N_("Retail"),
    "other": N_("Other step"),
}
FACTOR_LABELS = {
    "cold_chain": N_("Cold chain breaks"),
    "failed_inspections": N_("Failed inspections"),
    "recalls": N_("Recalls"),
    "error_declarations": N_("Error declarations"),
    "chain_gaps": N_("Gaps in the chain"),
}
LEVEL_LABELS = {"high": N_("High risk"), "medium": N_("Medium risk"), "low": N_("Low risk")}


def _product(request: Request, session: SessionDep, actor: PageActorDep, path: str) -> HTMLResponse:
    page = product.view(session, actor, path)
    return render(request, "food/product.html", page=page, stage_labels=STAGE_LABELS,
                  factor_labels=FACTOR_LABELS, level_labels=LEVEL_LABELS)  # fmt: skip


@router.get("/01/{gtin}/10/{lot}")
def product_by_lot(
    gtin: str, lot: str, request: Request, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """The page a lot's GS1 Digital Link QR opens: consumers' view, supervisors' in full."""
    return _product(request, session, actor, f"01/{gtin}/10/{lot}")


@router.get("/01/{gtin}/21/{serial}")
def product_by_serial(
    gtin: str, serial: str, request: Request, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """The page of one serialised item's Digital Link."""
    return _product(request, session, actor, f"01/{gtin}/21/{serial}")


@router.get("/food")
def worklist(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The inspection worklist: businesses by risk score, each factor explained."""
    scores = risk.scores(session, actor, purpose="inspection worklist")
    return render(request, "food/worklist.html", scores=scores, factor_labels=FACTOR_LABELS,
                  level_labels=LEVEL_LABELS, medium=risk.MEDIUM)  # fmt: skip


@router.get("/food/trace")
def trace_page(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    id: Annotated[str, Query(max_length=300)] = "",
    direction: str = "forward",
) -> HTMLResponse:
    """Recall tracing: a lot forward to every shop, or backward to its farms."""
    found, error = None, None
    if id.strip():
        try:
            found = trace.trace(session, actor, id.strip(), direction=direction)
        except Invalid as exc:
            error = str(exc)
    elif direction not in ("forward", "backward"):
        raise Invalid("direction: forward or backward", field="direction")
    return render(request, "food/trace.html", found=found, id=id, direction=direction,
                  error=error)  # fmt: skip


__all__ = ["DomainError", "router"]
