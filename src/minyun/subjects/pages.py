"""Subject pages (一人一档 / 一企一档): a subject's file and the stewards' review queue.

The file is `subjects.files.subject_file`, each source read through the viewer's own access
plan; the review queue and its decisions are `subjects.service`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from minyun.core.errors import Conflict, Invalid, NotFound
from minyun.core.security import authorize
from minyun.subjects import files, reviews
from minyun.web.deps import CsrfDep, IdPath, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import ACTIONS, LABELS, NAV, PageActorDep, render

router = APIRouter(include_in_schema=False)

NAV.insert(3, ("/subjects", N_("Subject files"), "subjects.read"))
LABELS.update(
    person=N_("Person"),
    enterprise=N_("Enterprise"),
    grown=N_("Grown"),
    merged=N_("Merged"),
    split=N_("Split"),
    created=N_("Created"),
    confirmed=N_("Same subject"),
)
ACTIONS.update(
    {
        "subjects.resolve": N_("Subjects resolved"),
        "subjects.review": N_("Subject pair decided"),
        "subjects.links": N_("Subject links exported"),
    }
)
LINK_NAMES = {
    "ric": N_("Identity number"), "name": N_("Name"), "birth_date": N_("Birth date"),
    "sex": N_("Sex"), "phone": N_("Phone"), "address": N_("Address"),
    "uscc": N_("Credit code"), "legal_person_ric": N_("Legal representative"),
}  # fmt: skip


@router.get("/subjects")
def subjects_home(
    request: Request, session: SessionDep, actor: PageActorDep, q: str | None = None
) -> Response:
    """Open a subject's file by its id."""
    authorize(session, actor, "subjects.read")
    wanted = (q or "").strip().upper()
    if wanted:
        return RedirectResponse(f"/subjects/{wanted[:16]}", 303)
    may_review = "subjects.review" in _may(session, actor)
    return render(request, "subjects/home.html", may_review=may_review)


def _may(session: SessionDep, actor: PageActorDep) -> set[str]:
    from minyun.core.security import decide

    return {a for a in ("subjects.review", "subjects.resolve") if decide(session, actor, a).allowed}


@router.get("/subjects/me")
def my_file(
    request: Request, session: SessionDep, actor: PageActorDep, platform: PlatformDep
) -> HTMLResponse:
    """A citizen's or enterprise's own file: every record about them, and who looked."""
    try:
        found, looks = files.own_file(session, platform.lake, actor)
    except NotFound:
        return render(request, "subjects/mine_empty.html")
    return render(request, "subjects/file.html", file=found, names=LINK_NAMES, looks=looks)


@router.get("/subjects/reviews")
def review_queue(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The stewards' queue: uncertain pairs with both records side by side."""
    return _reviews_page(request, session, actor, {})


def _reviews_page(
    request: Request, session: SessionDep, actor: PageActorDep, errors: dict[int, str],
    *, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    waiting = reviews.open_reviews(session, actor, limit=30)
    pairs = [(r, reviews.review_rows(session, r)) for r in waiting]
    return render(
        request, "subjects/reviews.html", status_code=status_code, pairs=pairs, errors=errors,
        names=LINK_NAMES,
    )  # fmt: skip


@router.post("/subjects/reviews/{review_id}", dependencies=[CsrfDep])
def decide(
    request: Request,
    review_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    same: Annotated[str, Form(max_length=5)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Confirm a pair as one subject or split it into two."""
    try:
        with session.begin_nested():
            reviews.decide_review(session, actor, review_id, same=same == "yes", reason=reason)
    except (Invalid, Conflict) as exc:
        return _reviews_page(request, session, actor, {review_id: str(exc)}, status_code=422)
    return RedirectResponse("/subjects/reviews", 303)


@router.get("/subjects/{subject_id}")
def subject_page(
    request: Request,
    subject_id: str,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
) -> HTMLResponse:
    """A subject's file: every source the viewer may read, provenance, conflicts, history."""
    found = files.subject_file(session, platform.lake, actor, subject_id.strip().upper()[:16])
    return render(request, "subjects/file.html", file=found, names=LINK_NAMES, looks=None)
