"""An issuing department's signing keys on the web: the list, rotation and retirement, for the
department's stewards and admins only, through the same service as `minyun licence`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.accounts.models import AccountKind
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.licences import credentials as vc
from minyun.licences import service
from minyun.licences.models import Licence
from minyun.web.app import create_app
from tests import factories
from tests.licences import kit
from tests.query.test_query_api import signed_in


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found[1]


def _methods(http: TestClient, org: str) -> list[str]:
    document = http.get(f"/licences/issuers/{org}/did.json").json()
    return [m["id"].rsplit("#", 1)[1] for m in document["verificationMethod"]]


def _alg(token: str) -> str:
    return str(json.loads(vc.b64url_decode(token.split(".")[0]))["alg"])


@dataclass
class Issuer:
    node: Platform
    resource: str  # the registrations the licences follow
    steward: Principal
    org: str
    org_id: int


@pytest.fixture
def issued(node: Platform, tmp_path: Path) -> Issuer:
    """A market regulator issuing two business licences with its first (Ed25519) key, on
    SQLite and on PostgreSQL."""
    code, steward, org = kit.registrations(node)
    kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2)])
    kit.define(node, steward, org, code)
    kit.issue(node)
    return Issuer(node, code, steward, org.code, org.id)


def test_a_steward_lists_rotates_and_retires_keys_and_old_licences_still_verify(
    issued: Issuer, tmp_path: Path
) -> None:
    node, org, org_id = issued.node, issued.org, issued.org_id
    app = create_app(node)
    http = signed_in(app, node, ["steward"], org_id)
    # The licences area links the department's keys for its steward.
    assert f'href="/licences/keys/{org}"' in http.get("/licences").text
    page = http.get(f"/licences/keys/{org}")
    assert page.status_code == 200 and "签名密钥" in page.text
    assert re.search(r'data-kid="key-1".*?Ed25519.*?签名中', page.text, re.S)
    assert f'href="/licences/issuers/{org}/did.json"' in page.text
    # The rotation form offers both kinds, the current one (Ed25519) chosen.
    assert 'value="Ed25519" checked' in page.text and 'value="SM2">' in page.text
    assert _methods(http, org) == ["key-1"]
    with node.factory() as session:
        old = list(session.scalars(select(Licence.credential)))

    # Without the confirmation ticked, nothing changes.
    unconfirmed = http.post(f"/licences/keys/{org}/rotate",
                            data={"algorithm": "SM2", "csrf": _csrf(page.text)})  # fmt: skip
    assert unconfirmed.status_code == 422 and "请勾选以确认轮换。" in unconfirmed.text
    assert _methods(http, org) == ["key-1"]
    made = http.post(f"/licences/keys/{org}/rotate",
                     data={"algorithm": "SM2", "confirm": "yes", "csrf": _csrf(page.text)})  # fmt: skip
    assert made.status_code == 303 and made.headers["location"].startswith(
        f"/licences/keys/{org}?made=key-2"
    )
    after = http.get(made.headers["location"])
    assert "现在使用 key-2（SM2）签名。" in after.text
    assert re.search(r'data-kid="key-1".*?已轮换.*?data-kid="key-2".*?SM2.*?签名中', after.text,
                     re.S)  # fmt: skip
    # The next rotation defaults to the kind the department now has.
    assert 'value="SM2" checked' in after.text
    assert _methods(http, org) == ["key-1", "key-2"]
    with node.factory() as session:
        [record] = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "licence.key.rotate")
        ).all()
        assert json.loads(record.detail or "{}") == {"from": "key-1", "to": "key-2",
                                                     "algorithm": "SM2"}  # fmt: skip

    # Licences signed before the rotation verify on the public page; new ones are SM2.
    for token in old:
        form = http.get("/licences/verify")
        checked = http.post("/licences/verify", data={"credential": token,
                                                      "csrf": _csrf(form.text)})  # fmt: skip
        assert 'data-outcome="valid"' in checked.text
    kit.load(node, issued.steward, issued.resource, tmp_path,
             [kit.row(1), kit.row(2), kit.row(3)])  # fmt: skip
    kit.issue(node)
    with node.factory() as session:
        new = session.scalars(select(Licence).where(Licence.holder_id == kit.row(3)["uscc"])).one()
        assert _alg(new.credential) == "SM2SM3"

    # Retiring key-1 asks first; without a reason it is refused with the reason on the form.
    confirm = http.get(f"/licences/keys/{org}/key-1/retire")
    assert confirm.status_code == 200 and "仅在密钥泄露时停用" in confirm.text
    empty = http.post(f"/licences/keys/{org}/key-1/retire",
                      data={"reason": " ", "csrf": _csrf(confirm.text)})  # fmt: skip
    assert empty.status_code == 422 and 'id="refusal"' in empty.text
    assert _methods(http, org) == ["key-1", "key-2"]
    gone = http.post(f"/licences/keys/{org}/key-1/retire",
                     data={"reason": "密钥泄露", "csrf": _csrf(confirm.text)})  # fmt: skip
    assert gone.status_code == 303
    assert _methods(http, org) == ["key-2"]
    with unit_of_work(node.factory) as session:
        steward = issued.steward
        assert service.verify(session, steward, old[0]).reason == "signed by a retired key"
        assert service.verify(session, steward, new.credential).outcome == "valid"
    # Retiring it again is refused in words, and changes nothing.
    again = http.post(f"/licences/keys/{org}/key-1/retire",
                      data={"reason": "再次", "csrf": _csrf(confirm.text)})  # fmt: skip
    assert again.status_code == 422 and "密钥 key-1 已停用。" in again.text
    listed = http.get(f"/licences/keys/{org}").text
    assert re.search(r'data-kid="key-1".*?已停用', listed, re.S)
    assert f"/licences/keys/{org}/key-1/retire" not in listed
    # Retiring the key that signs now hands over to a new key of its kind first.
    http.post(f"/licences/keys/{org}/key-2/retire",
              data={"reason": "泄露", "csrf": _csrf(listed)})  # fmt: skip
    assert _methods(http, org) == ["key-3"]
    with node.factory() as session:
        keys = service.issuer_keys(session, issued.steward, org)
        assert [(k.kid, service.algorithm_of(k), k.status) for k in keys] == [
            ("key-1", "Ed25519", "retired"), ("key-2", "SM2", "retired"),
            ("key-3", "SM2", "active"),
        ]  # fmt: skip


def test_citizens_and_other_departments_are_refused_and_nothing_changes(issued: Issuer) -> None:
    node, org = issued.node, issued.org
    app = create_app(node)
    with node.factory.begin() as session:
        citizen = factories.make_user(session, kind=AccountKind.CITIZEN, organization_id=None,
                                      ric=kit.loadkit.ric(7))  # fmt: skip
        member = factories.make_user(session, roles=[], organization_id=issued.org_id)
        other_org = factories.make_org(session).id
    outsiders = {
        "citizen": _sign_in(app, citizen.username),
        "member without a role": _sign_in(app, member.username),
        "another department's steward": signed_in(app, node, ["steward"], other_org),
    }
    for who, http in outsiders.items():
        assert f"/licences/keys/{org}" not in http.get("/licences").text, who
        token = _csrf(http.get("/licences/verify").text)
        for method, url, data in (
            ("GET", f"/licences/keys/{org}", None),
            ("GET", f"/licences/keys/{org}/key-1/retire", None),
            (
                "POST",
                f"/licences/keys/{org}/rotate",
                {"algorithm": "SM2", "confirm": "yes", "csrf": token},
            ),
            ("POST", f"/licences/keys/{org}/key-1/retire", {"reason": "x", "csrf": token}),
        ):
            answer = http.request(method, url, data=data)
            assert answer.status_code == 403, (who, url, answer.status_code)
        api = http.get(f"/api/v1/licence-issuers/{org}/keys")
        assert api.status_code == 403, who
        rotated = http.post(f"/api/v1/licence-issuers/{org}/keys", json={},
                            headers={"Origin": node.settings.base_url})  # fmt: skip
        assert rotated.status_code == 403, who
    anonymous = TestClient(app, follow_redirects=False)
    assert anonymous.get(f"/licences/keys/{org}").status_code in (303, 401)
    assert anonymous.get(f"/api/v1/licence-issuers/{org}/keys").status_code == 401
    assert _methods(anonymous, org) == ["key-1"]
    with node.factory() as session:
        denied = session.scalars(
            select(AuditRecord).where(
                AuditRecord.action == "licence.manage", AuditRecord.outcome == "denied"
            )
        ).all()
        assert len(denied) >= 3 * 6


def test_an_admin_manages_every_issuers_keys_through_the_api(issued: Issuer) -> None:
    node, org = issued.node, issued.org
    app = create_app(node)
    admin = signed_in(app, node, ["admin"], None)
    assert f'href="/licences/keys/{org}"' in admin.get("/licences").text
    origin = {"Origin": node.settings.base_url}
    [first] = admin.get(f"/api/v1/licence-issuers/{org}/keys").json()
    assert (first["kid"], first["algorithm"], first["status"]) == ("key-1", "Ed25519", "active")
    assert first["id"].endswith(f":licences:issuers:{org}#key-1")
    wrong = admin.post(f"/api/v1/licence-issuers/{org}/keys", json={"algorithm": "RSA"},
                       headers=origin)  # fmt: skip
    assert wrong.status_code == 422
    made = admin.post(f"/api/v1/licence-issuers/{org}/keys", json={}, headers=origin)
    assert made.status_code == 201
    assert (made.json()["kid"], made.json()["algorithm"]) == ("key-2", "Ed25519")
    retired = admin.post(f"/api/v1/licence-issuers/{org}/keys/key-1/retire",
                         json={"reason": "泄露"}, headers=origin)  # fmt: skip
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    again = admin.post(f"/api/v1/licence-issuers/{org}/keys/key-1/retire",
                       json={"reason": "泄露"}, headers=origin)  # fmt: skip
    assert again.status_code == 409
    missing = admin.post(f"/api/v1/licence-issuers/{org}/keys/key-9/retire",
                         json={"reason": "泄露"}, headers=origin)  # fmt: skip
    assert missing.status_code == 404
    assert _methods(admin, org) == ["key-2"]
    # The page shows the admin the same keys.
    page = admin.get(f"/licences/keys/{org}").text
    assert re.search(r'data-kid="key-1".*?已停用.*?data-kid="key-2".*?签名中', page, re.S)


def _sign_in(app: object, username: str) -> TestClient:
    http = TestClient(app, follow_redirects=False)  # type: ignore[arg-type]
    token = _csrf(http.get("/login").text)
    signed = http.post("/login", data={"username": username, "password": factories.PASSWORD,
                                       "csrf": token})  # fmt: skip
    assert signed.status_code == 303, signed.text
    return http
