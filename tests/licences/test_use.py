"""Holders, departments with grants, issuers' keys, and every bad input the issue lists."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from minyun.accounts.models import AccountKind
from minyun.catalog.models import Resource
from minyun.core import clock
from minyun.core.errors import Forbidden, NotFound
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.exchange import service as exchange
from minyun.licences import credentials as vc
from minyun.licences import service
from minyun.licences.models import Licence
from minyun.web.app import create_app
from tests import factories
from tests.licences import kit


@pytest.fixture
def issued(sqlite_node: Platform, tmp_path: Path) -> tuple[Platform, str, Principal, object]:
    node = sqlite_node
    code, steward, org = kit.registrations(node)
    kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2)])
    kit.define(node, steward, org, code)
    kit.issue(node)
    return node, code, steward, org


def _licence(node: Platform, holder: str) -> Licence:
    with node.factory() as session:
        found = session.scalars(select(Licence).where(Licence.holder_id == holder)).first()
        assert found is not None
        return found


def test_a_department_with_a_grant_fetches_a_holders_licences_and_the_holder_sees_it(
    issued: tuple[Platform, str, Principal, object],
) -> None:
    node, code, _steward, _org = issued
    holder = kit.row(1)["uscc"]
    others = _licence(node, kit.row(2)["uscc"]).id
    with unit_of_work(node.factory) as session:
        session.scalars(
            select(Resource).where(Resource.code == code)
        ).one().sharing_type = "unconditional"
        bank_org = factories.make_org(session)
        officer = Principal(kind="user", name="officer", organization_id=bank_org.id,
                            roles=frozenset({"consumer"}), account_kind="staff")  # fmt: skip
        assert service.holder_licences(session, officer, holder, purpose="办理开户") == []
        exchange.apply(session, officer, resource=code, purpose="办理开户", legal_basis="依申请",
                       fields=kit.COLUMNS, expires_at=clock.now() + timedelta(days=30))  # fmt: skip
    with unit_of_work(node.factory) as session:
        found = service.holder_licences(session, officer, holder, purpose="办理开户")
        # The grant's clearance (internal) does not show the sensitive legal person in
        # clear: the department gets the fields it may see, not the whole credential.
        assert [(lic.holder_id, whole) for lic, whole in found] == [(holder, False)]
        assert set(found[0][0].data) == {"uscc", "name", "reg_date"}
        assert found[0][0].credential == ""
        # A citizen's account is no department: refused.
        with pytest.raises(Forbidden):
            service.holder_licences(session, Principal(kind="user", name="c", account_kind="citizen"),
                                    holder, purpose="x")  # fmt: skip
        enterprise = factories.make_user(session, kind=AccountKind.ENTERPRISE, organization_id=None,
                                         uscc=holder)  # fmt: skip
        owner = Principal(kind="user", name=enterprise.username, user_id=enterprise.id,
                          account_kind="enterprise")  # fmt: skip
        mine = service.my_licences(session, owner)
        assert [lic.holder_id for lic in mine] == [holder]
        uses = service.uses_of(session, mine[0])
        assert [(u.kind, u.purpose, u.department) for u in uses] == [
            ("fetch", "办理开户", bank_org.name)
        ]
        # Another holder's licence is not found, the same as a missing one.
        with pytest.raises(NotFound):
            service.access_licence(session, owner, others)


def test_rotation_keeps_old_licences_valid_and_retiring_a_key_refuses_them(
    issued: tuple[Platform, str, Principal, object], tmp_path: Path
) -> None:
    node, code, steward, org = issued
    old = _licence(node, kit.row(1)["uscc"]).credential
    with unit_of_work(node.factory) as session:
        service.rotate_key(session, steward, org.code)
    kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2), kit.row(3)])
    kit.issue(node)
    new = _licence(node, kit.row(3)["uscc"]).credential
    assert vc.peek(old) and '"key-1"' not in new
    with unit_of_work(node.factory) as session:
        assert service.verify(session, steward, old).outcome == "valid"
        assert service.verify(session, steward, new).outcome == "valid"
        document = service.did_document(session, org.code)
        assert [m["id"].rsplit("#")[1] for m in document["verificationMethod"]] == [
            "key-1",
            "key-2",
        ]
        service.retire_key(session, steward, org.code, "key-1", reason="泄露")
    with unit_of_work(node.factory) as session:
        result = service.verify(session, steward, old)
        assert (result.outcome, result.reason) == ("forged", "signed by a retired key")
        assert service.verify(session, steward, new).outcome == "valid"
        assert len(service.did_document(session, org.code)["verificationMethod"]) == 1


def test_bad_input_is_answered_with_its_reason(
    issued: tuple[Platform, str, Principal, object],
) -> None:
    node, _code, _steward, _org = issued
    first = _licence(node, kit.row(1)["uscc"])
    token, licence_id = first.credential, first.id
    with unit_of_work(node.factory) as session:
        verify = service.verifier(session).verify
        assert verify("not ours").reason == "not a compact JWS credential"
        assert verify("eyJhbGciOiJub25lIn0.e30.").reason == "not a vc+jwt credential"
        # A foreign key: the same credential signed by a key of nobody here.
        payload = vc.peek(token)
        assert payload is not None
        foreign = vc.Signer(vc.signing_key(b"\x07" * 32), f"{payload['issuer']['id']}#key-9")
        assert verify(foreign.sign(payload)).reason == "signed by a key no trusted issuer holds"
        # Offline with no status list in hand: genuine, but its status is unknown.
        offline = vc.Verifier(service.trusted_keys(session))
        assert offline.verify(token).outcome == "unknown"
        # With the lists cached, offline answers; past their lifetime it says so.
        online = service.verifier(session)
        assert online.verify(token).outcome == "valid"
        cached = vc.Verifier(service.trusted_keys(session), lists=online.lists)
        assert cached.verify(token).outcome == "valid"
        later = vc.Verifier(service.trusted_keys(session), lists=online.lists,
                            clock=lambda: clock.now() + timedelta(hours=1))  # fmt: skip
        assert later.verify(token).reason == "the status list is out of date offline"
        # Past its end: expired.
        ten_years = vc.Verifier(service.trusted_keys(session), fetch=online.fetch,
                                clock=lambda: clock.now() + timedelta(days=3650 * 30))  # fmt: skip
        payload["validUntil"] = vc.iso(clock.now() + timedelta(days=1))
        kid = f"{payload['issuer']['id']}#key-1"
        resigned = service.signer_for(session, session.get(Licence, licence_id).type.issuer)  # type: ignore[union-attr]
        assert resigned.kid == kid
        assert ten_years.verify(resigned.sign(payload)).outcome == "expired"


def test_the_database_refuses_a_second_live_licence_for_one_source_row(
    issued: tuple[Platform, str, Principal, object],
) -> None:
    node, *_ = issued
    first = _licence(node, kit.row(1)["uscc"])
    twin = Licence(**{c.key: getattr(first, c.key) for c in Licence.__table__.columns})
    twin.id = "0" * 36
    with pytest.raises(IntegrityError), unit_of_work(node.factory) as session:
        session.add(twin)


def test_api_cli_and_did_documents(issued: tuple[Platform, str, Principal, object],
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    node, _code, _steward, org = issued
    http = TestClient(create_app(node))
    did = http.get(f"/licences/issuers/{org.code}/did.json")
    assert did.status_code == 200 and did.json()["id"].endswith(f":licences:issuers:{org.code}")
    status = http.get(f"/licences/status/{org.code}/revocation")
    assert status.headers["content-type"].startswith("application/vc+jwt")
    assert "max-age" in status.headers["cache-control"]
    assert http.get("/licences/status/no-such-org/revocation").status_code == 404
    # An offline counter downloads the trust bundle once and verifies without the network.
    bundle = http.get("/licences/trust-bundle").json()
    token = _licence(node, kit.row(1)["uscc"]).credential
    assert vc.Verifier.offline(bundle).verify(token).outcome == "valid"
    assert vc.Verifier.offline(bundle).verify(token[:-4] + "AAAA").outcome == "forged"
    refused = http.post("/api/v1/licences/verify", json={"credential": ""})
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert http.get("/api/v1/licences/mine").status_code in (401, 403)
    assert http.get("/api/v1/licence-types").json()[0]["code"] == "business-licence"
    spec = {"name": "营业执照（副本）", "issuer": org.code, "holder_kind": "enterprise",
            "schema": kit.TYPE_SCHEMA, "source": _code, "holder_field": "uscc"}  # fmt: skip
    assert http.put("/api/v1/licence-types/copy", json=spec).status_code == 401
    _client, bearer = factories.api_client_token(http, node, org.id, ["resource.read"])
    made = http.put("/api/v1/licence-types/copy", json=spec, headers=bearer)
    assert made.status_code == 200, made.text
    wrong = http.put("/api/v1/licence-types/copy", json={**spec, "holder_field": "name"},
                     headers=bearer)  # fmt: skip
    assert wrong.status_code == 422 and wrong.json()["field"] == "holder_field"
    monkeypatch.setenv("MINYUN_VAR_DIR", str(node.settings.var_dir))
    from minyun.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["licence", "list", "--holder", kit.row(1)["uscc"], "--json"])
    assert listed.exit_code == 0, listed.output
    licence_id = _licence(node, kit.row(1)["uscc"]).id
    assert licence_id in listed.output
    shown = runner.invoke(app, ["licence", "show", licence_id, "--credential"])
    assert (
        shown.exit_code == 0
        and shown.output.strip() == _licence(node, kit.row(1)["uscc"]).credential
    )
    checked = runner.invoke(app, ["licence", "verify", shown.output.strip()])
    assert checked.exit_code == 0 and checked.output.startswith("valid")


def test_statistics_count_per_type_and_per_issuing_department(
    issued: tuple[Platform, str, Principal, object],
) -> None:
    node, code, steward, org = issued
    first = _licence(node, kit.row(1)["uscc"])
    kit.define(node, steward, org, code, type_code="business-licence-copy")  # no licences yet
    with unit_of_work(node.factory) as session:
        service.verify(session, steward, first.credential)
        service.change_status(session, steward, first.id, to="revoked", reason="吊销")
    with unit_of_work(node.factory) as session:
        stats = {s.code: s for s in service.statistics(session, steward)}
        assert (stats["business-licence"].issued, stats["business-licence"].live,
                stats["business-licence"].revoked, stats["business-licence"].uses) == (2, 1, 1, 1)  # fmt: skip
        assert stats["business-licence-copy"].issued == 0
        [department] = service.issuer_statistics(list(stats.values()))
        assert (department.issuer_code, department.types, department.issued, department.live,
                department.revoked, department.uses) == (org.code, 2, 2, 1, 1, 1)  # fmt: skip
        with pytest.raises(Forbidden):
            service.statistics(session, Principal(kind="user", name="c", account_kind="citizen"))
    http = TestClient(create_app(node))
    _client, bearer = factories.api_client_token(http, node, org.id, ["resource.read"])
    by_issuer = http.get("/api/v1/licence-statistics", params={"by": "issuer"}, headers=bearer)
    assert by_issuer.status_code == 200, by_issuer.text
    assert [(r["issuer_code"], r["issued"]) for r in by_issuer.json()] == [(org.code, 2)]
    # The issuer's client sees who looked at a licence (here: the verification above).
    shown = http.get(f"/api/v1/licences/{first.id}", headers=bearer).json()
    assert [u["kind"] for u in shown["uses"]] == ["verify"]
    assert shown["uses"][0]["department"] == org.name
    assert (
        http.get("/api/v1/licence-statistics", params={"by": "x"}, headers=bearer).status_code
        == 422
    )
