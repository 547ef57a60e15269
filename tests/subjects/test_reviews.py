"""The stewards' review queue: confirm merges two subjects, split separates; runs replay them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, Forbidden, Invalid
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.subjects import reviews, service
from minyun.subjects.models import SubjectChange, SubjectLink, SubjectReview
from tests.subjects.kit import load_population

SYSTEM = Principal.system()
STEWARD = Principal(kind="user", name="steward-x", organization_id=1, roles=frozenset({"steward"}))


def _subject(node: Platform, uid: str) -> str:
    resource, _, key = uid.partition("|")
    with node.factory() as session:
        return str(
            session.scalar(
                select(SubjectLink.subject_id).where(
                    SubjectLink.resource == resource, SubjectLink.row_key == key
                )
            )
        )


def _queue(node: Platform, left: str, right: str) -> int:
    with unit_of_work(node.factory) as session:
        review = SubjectReview(
            kind="person", left_uid=left, right_uid=right, match_probability=0.8, match_weight=2.0
        )
        session.add(review)
        session.flush()
        return review.id


def test_confirm_merges_split_separates_and_a_full_run_keeps_both(
    node: Platform, tmp_path: Path
) -> None:
    tables, _, _ = load_population(node, tmp_path, 200)
    with unit_of_work(node.factory) as session:
        service.resolve(session, node.lake, SYSTEM, kind="person")
    keys = tables["gat_hjrk"]["id"].to_pylist()
    a, b = f"gat_hjrk|{keys[0]}", f"gat_hjrk|{keys[1]}"  # two different persons
    first = _queue(node, a, b)
    with unit_of_work(node.factory) as session:
        assert [r.id for r in reviews.open_reviews(session, STEWARD)] == [first]
        with pytest.raises(Invalid):
            reviews.decide_review(session, STEWARD, first, same=True, reason=" ")
    kept = _subject(node, a)
    with unit_of_work(node.factory) as session:
        reviews.decide_review(session, STEWARD, first, same=True, reason="同一人，户籍迁移")
    assert _subject(node, b) == kept
    with unit_of_work(node.factory) as session, pytest.raises(Conflict):
        reviews.decide_review(session, STEWARD, first, same=False, reason="again")
    c = f"gat_hjrk|{keys[2]}"
    second = _queue(node, a, c)
    with unit_of_work(node.factory) as session:
        reviews.decide_review(session, STEWARD, second, same=True, reason="同一人")
        third = SubjectReview(kind="person", left_uid=a, right_uid=c, match_probability=0.7,
                              match_weight=1.0)  # fmt: skip
    assert _subject(node, c) == kept
    with unit_of_work(node.factory) as session:
        session.query(SubjectReview).filter(SubjectReview.id == second).delete()
        session.add(third)
        session.flush()
        reviews.decide_review(session, STEWARD, third.id, same=False, reason="两人同名")
    assert _subject(node, c) != kept and _subject(node, b) == kept
    with unit_of_work(node.factory) as session:
        run = service.resolve(session, node.lake, SYSTEM, kind="person", full=True)
        assert run.mode == "full"
    assert _subject(node, a) == _subject(node, b) == kept  # the confirmed pair stays one
    assert _subject(node, c) != kept  # the split pair stays two
    with node.factory() as session:
        kinds = {c.kind for c in session.scalars(select(SubjectChange))}
        assert {"merged", "split"} <= kinds
        decided = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "subjects.review")
        ).all()
        assert len(decided) == 3 and all(r.purpose for r in decided)


def test_only_stewards_and_admins_decide(node: Platform) -> None:
    clerk = Principal(kind="user", name="c", organization_id=1, roles=frozenset({"consumer"}))
    with pytest.raises(Forbidden), unit_of_work(node.factory) as session:
        reviews.decide_review(session, clerk, 1, same=True, reason="x")


def test_an_incremental_run_keeps_apart_what_a_steward_split() -> None:
    import pyarrow as pa

    strong = pa.table(
        {"uid_l": ["new", "new"], "uid_r": ["a", "c"], "match_probability": [0.97, 0.99]}
    )
    subject_of = {"a": "P1", "b": "P1", "c": "P2"}
    uids = ["a", "b", "c", "new"]
    together = service._components(strong, subject_of, uids)
    assert len(set(together["cluster_id"].to_pylist())) == 1  # without the decision: one
    kept = service._components(strong, subject_of, uids, apart=[("a", "c")])
    cluster = dict(zip(kept["uid"].to_pylist(), kept["cluster_id"].to_pylist(), strict=True))
    assert cluster["new"] == cluster["c"] != cluster["a"] == cluster["b"]  # the likelier side
