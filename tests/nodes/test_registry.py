"""The node registry and the node link's rules, against a real committing node (SQLite and
PostgreSQL): who may register, what a node's request must prove, what a node may do here."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from minyun.core import clock
from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, DomainError, Forbidden, Invalid, Unauthenticated
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.nodes import service, signing
from minyun.nodes.models import NodeApplication, NodeResource
from minyun.orgs.models import Organization
from tests import factories

ADMIN = Principal(kind="user", name="admin", roles=frozenset({"admin"}), account_kind="staff")
URL = "http://127.0.0.1:1/api/v1/node-link/catalog"
KEY = Ed25519PrivateKey.generate()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest) -> Platform:
    return request.getfixturevalue("platform" if request.param == "sqlite" else "pg_platform")


def _add(node: Platform, node_id: str = "fuzhou", relation: str = "child", **over: Any) -> None:
    values: dict[str, Any] = {
        "node_id": node_id, "name": "福州市节点", "division_code": "350100",
        "public_key": signing.public_text(KEY.public_key()),
        "base_url": "http://127.0.0.1:1/", "relation": relation,
    }  # fmt: skip
    values.update(over)
    with node.factory.begin() as s:
        factories.ensure_divisions(s)
        service.add_node(s, ADMIN, **values)


def _authenticate(node: Platform, headers: dict[str, str], body: bytes = b"{}") -> int:
    with unit_of_work(node.factory):
        return service.authenticate(node.factory, method="POST", url=URL, headers=headers,
                                    body=body)  # fmt: skip


def _signed(key: Ed25519PrivateKey = KEY, key_id: str = "fuzhou") -> dict[str, str]:
    return signing.sign_request(key, key_id, method="POST", url=URL, body=b"{}")


def _denials(node: Platform) -> list[str | None]:
    with node.factory() as s:
        return list(s.scalars(select(AuditRecord.detail).where(
            AuditRecord.action == "nodes.authenticate", AuditRecord.outcome == "denied"
        ).order_by(AuditRecord.seq)))  # fmt: skip


def test_only_administrators_register_and_the_input_is_checked(node: Platform) -> None:
    _add(node)
    with node.factory.begin() as s:
        [found] = service.list_nodes(s, ADMIN)
        assert (found.node_id, found.relation, found.status) == ("fuzhou", "child", "active")
        assert found.base_url == "http://127.0.0.1:1"
    bad: list[tuple[dict[str, Any], type[DomainError]]] = [
        ({"node_id": "Fuzhou!"}, Invalid), ({"public_key": "not-a-key"}, Invalid),
        ({"division_code": "999999"}, Invalid), ({"base_url": "ftp://x"}, Invalid),
        ({"relation": "sibling"}, Invalid), ({"name": " "}, Invalid),
    ]  # fmt: skip
    for over, error in bad:
        with pytest.raises(error):
            _add(node, **{"node_id": "xiamen", **over})
    with pytest.raises(Conflict):
        _add(node)
    steward = Principal(kind="user", name="s", organization_id=1, roles=frozenset({"steward"}),
                        account_kind="staff")  # fmt: skip
    with pytest.raises(Forbidden), unit_of_work(node.factory) as s:
        service.add_node(s, steward, node_id="xiamen", name="厦门", division_code="350200",
                         public_key=signing.public_text(KEY.public_key()),
                         base_url="http://x", relation="child")  # fmt: skip
    with node.factory() as s:
        refused = s.scalars(select(AuditRecord).where(AuditRecord.action == "nodes.manage")).one()
        assert refused.outcome == "denied" and refused.actor == "user:s"


def test_a_node_request_proves_its_node_once(node: Platform) -> None:
    _add(node)
    headers = _signed()
    with node.factory() as s:
        expected = service.get_node(s, "fuzhou").id
    assert _authenticate(node, headers) == expected
    with pytest.raises(Unauthenticated) as replayed:
        _authenticate(node, headers)
    assert replayed.value.code == "node-signature-replayed"
    refusals = [
        ({}, "node-signature-missing"),
        (_signed(key_id="nowhere"), "node-unknown"),
        (_signed(Ed25519PrivateKey.generate()), "node-signature-invalid"),
    ]
    for headers_, code in refusals:
        with pytest.raises(Unauthenticated) as refused:
            _authenticate(node, headers_)
        assert refused.value.code == code
    with node.factory.begin() as s:
        service.revoke_node(s, ADMIN, "fuzhou", reason="密钥泄露")
    with pytest.raises(Forbidden) as revoked:
        _authenticate(node, _signed())
    assert revoked.value.code == "node-revoked"
    assert _denials(node) == ["replayed", "no node signature", "unknown node",
                              "the signature does not verify", "revoked node"]  # fmt: skip
    with pytest.raises(Conflict), node.factory.begin() as s:
        service.revoke_node(s, ADMIN, "fuzhou", reason="again")


def _entry(code: str, **over: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "code": code, "name": f"资源{code}", "summary": "", "sharing_type": "conditional",
        "provider": {"code": "fz-ps", "name": "福州市公安局"}, "update_cycle": "daily",
        "fields": [{"name": "id", "title": "编号", "type": "integer", "sensitivity": "public"}],
    }  # fmt: skip
    entry.update(over)
    return entry


def test_a_child_catalog_replaces_what_it_published_before(node: Platform) -> None:
    _add(node)
    _add(node, "province", relation="parent")
    with node.factory.begin() as s:
        child = service.get_node(s, "fuzhou")
        assert service.receive_catalog(s, child, [_entry("a"), _entry("b")]) == 2
    with node.factory.begin() as s:
        child = service.get_node(s, "fuzhou")
        service.receive_catalog(s, child, [_entry("b", name="新名称")])
        listed = service.remote_catalog(s, ADMIN)
        assert [(r.node.node_id, r.code, r.name) for r in listed] == [("fuzhou", "b", "新名称")]
        assert s.scalars(select(NodeResource.listed).where(NodeResource.code == "a")).one() is False
        with pytest.raises(Invalid):
            service.receive_catalog(s, child, [_entry("c", sharing_type="none")])
        for garbage in ([{"code": "d"}], ["d"], [_entry("")], [_entry("f", fields="x")]):
            with pytest.raises(Invalid):
                service.receive_catalog(s, child, garbage)
        # The same code twice is one entry (the last wins).
        assert service.receive_catalog(s, child, [_entry("g"), _entry("g", name="后者")]) == 1
        # A parent does not publish its catalog downward.
        with pytest.raises(Forbidden):
            service.receive_catalog(s, service.get_node(s, "province"), [_entry("e")])


def test_a_node_acts_only_for_its_own_departments(node: Platform) -> None:
    _add(node)
    with node.factory.begin() as s:
        mine = factories.make_org(s, code="fz-own")
        child = service.get_node(s, "fuzhou")
        # A department of this node cannot be claimed by a node.
        with pytest.raises(Forbidden) as taken:
            service._adopt(s, child, {"code": "fz-own", "uscc": mine.uscc, "name": "x",
                                      "division_code": "350100"})  # fmt: skip
        assert taken.value.code == "node-consumer-taken"
        with pytest.raises(Forbidden) as unknown:
            service.delegate(s, child, consumer="fj-civil", on_behalf_of="user:a")
        assert unknown.value.code == "node-consumer-unknown"
        adopted = service._adopt(s, child, {"code": "fj-civil", "name": "福建省民政厅",
                                            "uscc": factories.make_uscc(9301, "350000"),
                                            "division_code": "350000"})  # fmt: skip
        actor = service.delegate(s, child, consumer="fj-civil", on_behalf_of="client:mc_1")
        assert actor.organization_id == adopted.id and actor.label == "client:node:fuzhou"
        assert actor.on_behalf_of == "fuzhou/client:mc_1"
        assert service._adopt(s, child, {"code": "fj-civil"}).id == adopted.id
        assert s.get(Organization, adopted.id) is not None


def test_nonces_are_forgotten_once_their_signature_is_dead(node: Platform) -> None:
    _add(node)
    _authenticate(node, _signed())
    from minyun.nodes.models import NodeNonce

    with node.factory.begin() as s:
        for row in s.scalars(select(NodeNonce)):
            row.expires_at = clock.now() - timedelta(seconds=1)
    _authenticate(node, _signed())
    with node.factory() as s:
        assert len(s.scalars(select(NodeNonce)).all()) == 1


def test_the_province_reads_only_for_a_department_with_an_approved_application(
    node: Platform,
) -> None:
    _add(node)
    with node.factory.begin() as s:
        holder, other = factories.make_org(s), factories.make_org(s)
        child = service.get_node(s, "fuzhou")
        for code, status in (("r1", "approved"), ("r2", "submitted")):
            s.add(NodeApplication(node_id=child.id, resource_code=code, consumer_id=holder.id,
                                  applicant="user:a", purpose="核验", fields=["id"], remote_id=1,
                                  status=status))  # fmt: skip
        ids = holder.id, other.id

    def reader(org_id: int, *roles: str) -> Principal:
        return Principal(kind="user", name="u", organization_id=org_id, roles=frozenset(roles),
                         account_kind="staff")  # fmt: skip

    cases = [
        (reader(ids[0], "consumer"), "fuzhou/r1", True),
        (reader(ids[0], "consumer"), "fuzhou/r2", False),  # still waiting
        (reader(ids[0], "consumer"), "xiamen/r1", False),  # another node
        (reader(ids[0], "approver"), "fuzhou/r1", False),  # no data role
        (reader(ids[1], "consumer"), "fuzhou/r1", False),  # another department
        (Principal(kind="client", name="c", organization_id=ids[0],
                   scopes=frozenset({"resource.read"})), "fuzhou/r1", True),
        (Principal(kind="client", name="c", organization_id=ids[0],
                   scopes=frozenset({"org.read"})), "fuzhou/r1", False),
    ]  # fmt: skip
    with node.factory() as s:
        for actor, target, expected in cases:
            assert service._may_read_remote(s, actor, service.READ_ACTION, target) is expected, (
                actor, target,
            )  # fmt: skip
            assert not service._may_read_remote(s, actor, "nodes.manage", target)


def test_a_forwarded_application_with_bad_parts_is_refused(node: Platform) -> None:
    _add(node)
    consumer = {"code": "fj-civil", "name": "福建省民政厅", "division_code": "350000",
                "uscc": factories.make_uscc(9302, "350000")}  # fmt: skip
    good: dict[str, Any] = {"consumer": consumer, "resource": "r1", "purpose": "核验",
                            "legal_basis": "《办法》", "fields": ["id"],
                            "expires_at": "2030-01-01T00:00:00+08:00"}  # fmt: skip
    for bad in ({"consumer": "fj-civil"}, {"fields": "id"}, {"row_filter": {"x": 1}},
                {"expires_at": "soon"}, {"consumer": {**consumer, "uscc": "bad"}},
                {"resource": "no-such-resource"}):  # fmt: skip
        with pytest.raises(DomainError), node.factory.begin() as s:
            service.receive_application(s, service.get_node(s, "fuzhou"), {**good, **bad},
                                        on_behalf_of="user:a")  # fmt: skip
    with node.factory() as s:
        assert (
            s.scalars(select(Organization).where(Organization.code == "fj-civil")).first() is None
        )
