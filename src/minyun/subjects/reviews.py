"""The stewards' review queue: uncertain pairs, and decisions that merge or split subjects.

Kept apart from the linkage (no Splink here), so the web pages load without it.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from minyun.core import audit, clock, policies
from minyun.core.errors import Conflict, Invalid, NotFound
from minyun.core.security import Principal, authorize
from minyun.subjects.models import (
    ChangeKind,
    ReviewStatus,
    SubjectChange,
    SubjectLink,
    SubjectReview,
)

__all__ = ["decide_review", "next_number", "open_reviews", "review_rows"]

PREFIX = {"person": "P", "enterprise": "E"}
KINDS = ("person", "enterprise")


def next_number(session: Session, kind: str) -> int:
    """The number of the next new subject id of `kind`."""
    prefix = PREFIX[kind]
    tops = [
        session.scalar(select(func.max(column)).where(column.like(f"{prefix}%")))
        for column in (SubjectLink.subject_id, SubjectChange.subject_id)
    ]
    return max((int(top[1:]) for top in tops if top), default=0) + 1


def open_reviews(
    session: Session, actor: Principal, *, kind: str | None = None, limit: int = 50
) -> list[SubjectReview]:
    """The uncertain pairs waiting for a decision, most likely first."""
    authorize(session, actor, "subjects.review", target=kind or "all", target_type="subjects")
    query = select(SubjectReview).where(SubjectReview.status == ReviewStatus.OPEN)
    if kind is not None:
        query = query.where(SubjectReview.kind == _kind(kind))
    return list(
        session.scalars(query.order_by(SubjectReview.match_probability.desc()).limit(limit))
    )


def decide_review(
    session: Session, actor: Principal, review_id: int, *, same: bool, reason: str
) -> SubjectReview:
    """A steward's decision on an uncertain pair: one subject (merge) or two (split); audited."""
    authorize(
        session, actor, "subjects.review", target=str(review_id), target_type="subject_review"
    )
    if not reason.strip():
        raise Invalid("a decision needs a reason", field="reason")
    review = session.get(SubjectReview, review_id)
    if review is None:
        raise NotFound(f"no review {review_id}")
    if review.status != ReviewStatus.OPEN:
        raise Conflict(f"review {review_id} is already decided ({review.status})")
    left, right = _link(session, review.left_uid), _link(session, review.right_uid)
    if same and left.subject_id != right.subject_id:
        merged = right.subject_id
        count = session.scalar(
            select(func.count()).select_from(SubjectLink).where(SubjectLink.subject_id == merged)
        )
        session.execute(
            update(SubjectLink)
            .where(SubjectLink.subject_id == merged)
            .values(subject_id=left.subject_id)
        )
        session.add(
            SubjectChange(
                kind=ChangeKind.MERGED,
                subject_id=left.subject_id,
                other_id=merged,
                rows=int(count or 0),
                by=actor.label,
            )
        )
    elif not same and left.subject_id == right.subject_id:
        fresh = f"{PREFIX[review.kind]}{next_number(session, review.kind):010d}"
        session.add(
            SubjectChange(
                kind=ChangeKind.SPLIT,
                subject_id=fresh,
                other_id=left.subject_id,
                rows=1,
                by=actor.label,
            )
        )
        right.subject_id = fresh
    policies.bump_epoch(session)  # the data subjects' plans follow their links
    review.status = ReviewStatus.CONFIRMED if same else ReviewStatus.SPLIT
    review.reason = reason
    review.decided_by = actor.label
    review.decided_at = clock.now()
    audit.record(
        session, actor, "subjects.review", target=str(review.id), target_type="subject_review",
        keys=[review.left_uid, review.right_uid], purpose=reason,
        detail=f"{review.status}: {left.subject_id} / {right.subject_id}",
    )  # fmt: skip
    return review


def _link(session: Session, uid: str) -> SubjectLink:
    resource, _, row_key = uid.partition("|")
    link = session.scalars(
        select(SubjectLink).where(SubjectLink.resource == resource, SubjectLink.row_key == row_key)
    ).first()
    if link is None:
        raise NotFound(f"no linked row {uid}")
    return link


def review_rows(session: Session, review: SubjectReview) -> list[SubjectLink | None]:
    """The two linked rows of a review (their subjects now), for the steward's page."""
    out: list[SubjectLink | None] = []
    for uid in (review.left_uid, review.right_uid):
        try:
            out.append(_link(session, uid))
        except NotFound:
            out.append(None)
    return out


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise Invalid("kind must be person or enterprise", field="kind")
    return kind
