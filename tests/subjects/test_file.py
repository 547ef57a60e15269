"""The file (档案) of a subject: sources through the viewer's plans, provenance, conflicts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden, NotFound
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.subjects import files, service
from minyun.subjects.models import SubjectLink
from tests.subjects.kit import load_population

SYSTEM = Principal.system()


def _richest(node: Platform) -> str:
    """The subject with rows in the most resources."""
    with node.factory() as session:
        rows = session.execute(select(SubjectLink.subject_id, SubjectLink.resource)).all()
    per = Counter(subject for subject, _ in set(rows))
    return per.most_common(1)[0][0]


def test_a_file_gathers_every_source_with_provenance_and_conflicts(
    node: Platform, tmp_path: Path
) -> None:
    _, _, stewards = load_population(node, tmp_path, 200)
    with unit_of_work(node.factory) as session:
        service.resolve(session, node.lake, SYSTEM, kind="person")
    subject = _richest(node)
    with unit_of_work(node.factory) as session:
        found = files.subject_file(session, node.lake, SYSTEM, subject)
        assert len(found.departments) >= 4 and found.hidden_sources == 0
        assert all(r.lake_version >= 0 and r.department for r in found.records)
        names = {r.values.get("name") for r in found.records} - {None}
        conflict_links = {c.link for c in found.conflicts}
        assert (len(names) > 1) == ("name" in conflict_links)
    # A steward of the police department sees its own rows only; the others are counted.
    police = stewards["gat_hjrk"]
    with unit_of_work(node.factory) as session:
        mine = files.subject_file(session, node.lake, police, subject)
        assert {r.resource for r in mine.records} == {"gat_hjrk"}
        assert mine.hidden_sources == len(found.departments) - 1
        ric = mine.records[0].values["ric"]
        assert ric is not None  # the provider sees its own data
    with node.factory() as session:
        reads = session.scalars(
            select(AuditRecord).where(
                AuditRecord.action == "resource.read", AuditRecord.purpose == "subject file"
            )
        ).all()
        assert {r.object_id for r in reads} >= {"gat_hjrk"}
        assert all(r.record_keys for r in reads)  # audited with the rows' keys


def test_an_unknown_subject_is_not_found(node: Platform) -> None:
    with pytest.raises(NotFound), unit_of_work(node.factory) as session:
        files.subject_file(session, node.lake, SYSTEM, "P9999999999")


def test_a_citizen_sees_their_whole_file_in_clear_and_who_looked(
    node: Platform, tmp_path: Path
) -> None:
    from tests import factories

    tables, _, stewards = load_population(node, tmp_path, 150)
    with unit_of_work(node.factory) as session:
        service.resolve(session, node.lake, SYSTEM, kind="person")
    me = tables["gat_hjrk"].slice(0, 1).to_pylist()[0]
    with unit_of_work(node.factory) as session:
        user = factories.make_user(session, kind="citizen", ric=me["ric"], organization_id=None)
        citizen = Principal(kind="user", name=user.username, user_id=user.id,
                            account_kind="citizen")  # fmt: skip
    police = stewards["gat_hjrk"]
    with unit_of_work(node.factory) as session:
        subject = files.own_file(session, node.lake, citizen)[0].subject_id
        files.subject_file(session, node.lake, police, subject)  # the police look
    with unit_of_work(node.factory) as session:
        mine, looks = files.own_file(session, node.lake, citizen)
        assert mine.hidden_sources == 0
        hukou = next(r for r in mine.records if r.resource == "gat_hjrk")
        assert hukou.values["ric"] == me["ric"]  # in clear: it is their own
        assert [look.actor for look in looks] == [police.label]
    other = tables["gat_hjrk"].slice(1, 1).to_pylist()[0]["id"]
    with unit_of_work(node.factory) as session:
        with node.factory() as s2:
            stranger = s2.scalar(select(SubjectLink.subject_id).where(SubjectLink.row_key == other))
        with pytest.raises(Forbidden):
            files.subject_file(session, node.lake, citizen, str(stranger))
