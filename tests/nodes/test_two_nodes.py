"""A city node and the province node as two real processes (uvicorn), each with its own
SQLite database and var folder, trusting each other's node key.

The city publishes its catalog upward (`minyun nodes publish`); a province consumer sees the
resource marked with its node, applies (the city's approver decides, with fewer fields and
narrower rows) and reads it through the province: both nodes authorise and audit the call,
under one request id. Forged, tampered, expired and replayed signatures, an unknown node and
a revoked one are refused with problem+json and audited. `minyun audit verify` is clean on
both nodes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from typer.testing import CliRunner, Result

from minyun.accounts import service as accounts
from minyun.cli import app
from minyun.core.audit import AuditRecord
from minyun.core.config import Settings, load_settings
from minyun.core.keys import load_node_key
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.exchange import service as exchange
from minyun.exchange.models import Application
from minyun.nodes import signing
from minyun.orgs import service as orgs
from tests import factories
from tests.browser import _free_port
from tests.exchange.kit import person
from tests.query.data import add_resource, people

SYSTEM = Principal.system()
CODE = "fz-residents"


@dataclass
class NodeProc:
    name: str
    var: Path
    port: int
    database_url: str = ""  # empty: the node's own SQLite file under var

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINYUN_")}
        env |= {
            "MINYUN_VAR_DIR": str(self.var),
            "MINYUN_BASE_URL": self.base,
            "MINYUN_NODE_NAME": self.name,
        }
        if self.database_url:
            env["MINYUN_DATABASE_URL"] = self.database_url
        return env

    def settings(self) -> Settings:
        return load_settings(var_dir=self.var, base_url=self.base, node_name=self.name,
                             database_url=self.database_url)  # fmt: skip

    @contextmanager
    def platform(self) -> Iterator[Platform]:
        node = Platform.open(self.settings(), run_jobs_here=False)
        try:
            yield node
        finally:
            node.close()

    def cli(self, *args: str) -> Result:
        """The `minyun` command run in this process against this node (as its operator would)."""
        with pytest.MonkeyPatch.context() as mp:
            for name in [k for k in os.environ if k.startswith("MINYUN_")]:
                mp.delenv(name)
            for name, value in self.env.items():
                if name.startswith("MINYUN_"):
                    mp.setenv(name, value)
            return CliRunner().invoke(app, list(args))

    def public_key(self) -> str:
        return signing.public_text(load_node_key(self.var.resolve()).public)


@contextmanager
def _serve(*nodes: NodeProc) -> Iterator[None]:
    """Each node in its own uvicorn process, started together; stopped at the end."""
    processes = []
    for node in nodes:
        command = [sys.executable, "-m", "uvicorn", "minyun.web.asgi:app", "--host",
                   "127.0.0.1", "--port", str(node.port), "--log-level", "warning"]  # fmt: skip
        processes.append(subprocess.Popen(command, env=node.env, start_new_session=True))
    try:
        deadline = time.monotonic() + 120
        for node, process in zip(nodes, processes, strict=True):
            while True:
                try:
                    if httpx.get(f"{node.base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass
class World:
    city: NodeProc
    province: NodeProc
    approver: Principal
    client_id: str
    secret: str


def _setup(tmp_path: Path, databases: tuple[str, str]) -> World:
    city = NodeProc("fuzhou", tmp_path / "city", _free_port(), databases[0])
    province = NodeProc("province", tmp_path / "province", _free_port(), databases[1])
    with city.platform() as node:
        node.migrate()
        with node.factory.begin() as s:
            orgs.load_divisions(s, orgs.packaged_divisions())
            provider = factories.make_org(s, code="fz-public-security", name="福州市公安局")
            resource = add_resource(s, node.lake, provider_id=provider.id, code=CODE,
                                    versions=[people(30)], primary_key=["id"])  # fmt: skip
            resource.sharing_type, resource.legal_basis = "conditional", "《条例》"
            resource.name, resource.summary = "福州市常住人口", "市公安局登记的常住人口"
            approver = person(provider.id, "approver", name="fz-approver")
    with province.platform() as node:
        node.migrate()
        with node.factory.begin() as s:
            orgs.load_divisions(s, orgs.packaged_divisions())
            consumer = factories.make_org(s, code="fj-civil-affairs", name="福建省民政厅",
                                          uscc=factories.make_uscc(9101, "350000"),
                                          division_code="350000")  # fmt: skip
            factories.make_user(
                s, roles=["consumer"], organization_id=consumer.id, username="fj-consumer"
            )
            made = accounts.create_client(s, SYSTEM, organization_id=consumer.id, name="民政系统",
                                          scopes=["resource.read", "exchange.apply"])  # fmt: skip
            client_id, secret = made.client.client_id, made.secret
    # Each node registers the other with the key the other made (the CLI, as an operator would).
    added = city.cli("nodes", "add", "province", province.base, province.public_key(),
                     "--name", "福建省节点", "--division", "350000", "--relation", "parent")  # fmt: skip
    assert added.exit_code == 0, added.output
    added = province.cli("nodes", "add", "fuzhou", city.base, city.public_key(),
                         "--name", "福州市节点", "--division", "350100", "--relation", "child")  # fmt: skip
    assert added.exit_code == 0, added.output
    return World(city, province, approver, client_id, secret)


def _bearer(w: World) -> dict[str, str]:
    r = httpx.post(f"{w.province.base}/api/v1/oauth/token", data={"grant_type": "client_credentials"},
                   auth=(w.client_id, w.secret))  # fmt: skip
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _signed(key: Ed25519PrivateKey, key_id: str, url: str, **over: object) -> dict[str, str]:
    headers = {"minyun-consumer": "fj-civil-affairs", "minyun-on-behalf-of": "user:test"}
    return signing.sign_request(key, key_id, method="GET", url=url, headers=headers, **over)  # type: ignore[arg-type]


def _audit(node: NodeProc) -> list[AuditRecord]:
    with node.platform() as p, p.factory() as s:
        found = list(s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
        s.expunge_all()
    return found


def _problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == f"/problems/{code}", r.json()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
def databases(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Each node's own database: two SQLite files, or two PostgreSQL databases."""
    if request.param == "sqlite":
        return "", ""
    pg = request.getfixturevalue("pg_databases")
    return pg.create(), pg.create()


def test_city_and_province_interconnect_as_two_processes(
    tmp_path: Path, databases: tuple[str, str]
) -> None:
    w = _setup(tmp_path, databases)
    with _serve(w.city, w.province):
        # The city publishes its catalog upward; the province shows it, marked with its node.
        published = w.city.cli("nodes", "publish")
        assert published.exit_code == 0, published.output
        assert "published 1 resources to province" in published.output
        bearer = _bearer(w)
        api = httpx.Client(base_url=w.province.base, headers=bearer, timeout=30)
        listed = api.get("/api/v1/nodes/catalog").json()
        assert [(r["node"], r["code"], r["name"]) for r in listed] == [
            ("fuzhou", CODE, "福州市常住人口")
        ]
        assert {f["name"] for f in listed[0]["fields"]} == {"id", "name", "city", "age", "born",
                                                            "score"}  # fmt: skip

        # A province consumer applies; the city (the authority) holds it for its approver.
        end = (datetime.now(UTC) + timedelta(days=90)).isoformat()
        r = api.post("/api/v1/nodes/applications", json={
            "node": "fuzhou", "resource": CODE, "purpose": "低保资格核验",
            "legal_basis": "《社会救助暂行办法》", "fields": ["id", "name", "age", "score"],
            "expires_at": end,
        })  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "submitted"
        remote_id = r.json()["remote_id"]

        # Not approved yet: the province refuses the read itself (and audits the refusal).
        rows_url = f"/api/v1/nodes/fuzhou/resources/{CODE}/rows"
        _problem(api.get(rows_url, params={"purpose": "低保资格核验"}), 403, "forbidden")

        # The city's approver approves with one field fewer and narrower rows.
        with w.city.platform() as node, node.factory.begin() as s:
            application = s.get(Application, remote_id)
            assert application is not None and application.consumer.code == "fj-civil-affairs"
            assert application.applicant == "client:node:fuzhou" or application.applicant
            exchange.approve_application(s, w.approver, remote_id, fields=["id", "name", "age"],
                                         row_filter="age >= 25")  # fmt: skip

        # The province hears of the decision from the city.
        mine = api.get("/api/v1/nodes/applications").json()
        assert [(a["remote_id"], a["status"]) for a in mine] == [(remote_id, "submitted")]
        r = api.post(f"/api/v1/nodes/applications/{mine[0]['id']}/refresh")
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["granted_fields"]) == (
            "approved",
            ["id", "name", "age"],
        )

        # Read through the province: the city's grant shapes the rows.
        r = api.get(rows_url, params={"purpose": "低保资格核验", "limit": 100})
        assert r.status_code == 200, r.text
        body = r.json()
        request_id = r.headers["x-request-id"]
        assert body["node"] == "fuzhou" and set(body["fields"]) == {"id", "name", "age"}
        expected = [row for row in people(30).to_pylist() if (row["age"] or 0) >= 25]
        assert body["rows"] and len(body["rows"]) == len(expected)
        assert all(set(row) == {"id", "name", "age"} and row["age"] >= 25 for row in body["rows"])
        # Asking for more than the grant is refused by the city, relayed by the province.
        r = api.get(rows_url, params={"fields": "id,score", "purpose": "低保资格核验"})
        assert r.status_code in (403, 422), r.text
        assert "score" not in r.text or r.json()["type"].startswith("/problems/")

        # The city node itself: attacks on its node link.
        city_rows = f"{w.city.base}/api/v1/node-link/resources/{CODE}/rows?limit=5"
        province_key = load_node_key(w.province.var.resolve()).private
        stranger = Ed25519PrivateKey.generate()
        _problem(httpx.get(city_rows), 401, "node-signature-missing")
        _problem(httpx.get(city_rows, headers=_signed(stranger, "nowhere", city_rows)), 401,
                 "node-unknown")  # fmt: skip
        _problem(httpx.get(city_rows, headers=_signed(stranger, "province", city_rows)), 401,
                 "node-signature-invalid")  # fmt: skip
        tampered = city_rows.replace("limit=5", "limit=500")
        _problem(httpx.get(tampered, headers=_signed(province_key, "province", city_rows)), 401,
                 "node-signature-invalid")  # fmt: skip
        old = datetime.now(UTC) - timedelta(minutes=10)
        _problem(
            httpx.get(city_rows, headers=_signed(province_key, "province", city_rows, now=old)),
            401,
            "node-signature-invalid",
        )
        good = _signed(province_key, "province", city_rows)
        first = httpx.get(city_rows, headers=good)
        assert first.status_code == 200, first.text
        assert len(first.json()["rows"]) == 5 and set(first.json()["fields"]) == {
            "id",
            "name",
            "age",
        }
        _problem(httpx.get(city_rows, headers=good), 401, "node-signature-replayed")
        impostor = {**_signed(province_key, "province", city_rows)}
        impostor["minyun-consumer"] = "fz-public-security"  # covered: the signature breaks
        _problem(httpx.get(city_rows, headers=impostor), 401, "node-signature-invalid")

        # The city's grant is the authority: once revoked there, the province's read is refused.
        with w.city.platform() as node, node.factory.begin() as s:
            [grant] = exchange.list_grants(s, w.approver, side="provider")
            exchange.revoke_grant(s, w.approver, grant.id, reason="用途已结束")
        _problem(api.get(rows_url, params={"purpose": "低保资格核验"}), 403, "forbidden")

        # A consumer applies again on the province's page; the city holds it for its approver.
        browser = httpx.Client(base_url=w.province.base, timeout=30)
        login = browser.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', login)
        assert csrf is not None
        signed = browser.post("/login", data={"username": "fj-consumer", "csrf": csrf.group(1),
                                              "password": factories.PASSWORD})  # fmt: skip
        assert signed.status_code == 303, signed.text
        page = browser.get("/nodes").text
        assert "福州市常住人口" in page and "福州市节点" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        form = {"csrf": csrf.group(1), "fields": ["id", "age"], "purpose": "年度核查",
                "legal_basis": "《社会救助暂行办法》", "end": "2027-06-30"}  # fmt: skip
        sent = browser.post(f"/nodes/fuzhou/{CODE}/apply", data=form)
        assert sent.status_code == 303 and sent.headers["location"].startswith("/nodes?done")
        assert "待审批" in browser.get("/nodes").text or "submitted" in browser.get("/nodes").text
        browser.close()

        # The city revokes the province: its next call is refused; the province relays it.
        revoked = w.city.cli("nodes", "revoke", "province", "--reason", "密钥泄露")
        assert revoked.exit_code == 0, revoked.output
        r = api.get(rows_url, params={"purpose": "低保资格核验"})
        _problem(r, 403, "node-revoked")
        api.close()

    city_audit, province_audit = _audit(w.city), _audit(w.province)
    # Both nodes recorded the read, under the province's request id.
    [read_here] = [
        a for a in province_audit if a.action == "nodes.read" and a.request_id == request_id
    ]
    assert read_here.outcome == "success" and read_here.record_count == len(expected)
    assert read_here.object_id == f"fuzhou/{CODE}" and read_here.purpose == "低保资格核验"
    [read_there] = [a for a in city_audit if a.request_id == request_id]
    assert read_there.action == "resource.read" and read_there.outcome == "success"
    assert read_there.actor == "client:node:province"
    assert read_there.on_behalf_of and read_there.on_behalf_of.startswith("province/client:")
    assert read_there.record_count == len(expected) and read_there.purpose == "低保资格核验"
    # The catalog, the application and the grant are on record where they happened.
    assert any(a.action == "nodes.publish" for a in city_audit)
    assert any(a.action == "nodes.catalog" for a in province_audit)
    assert any(a.action == "nodes.apply" for a in province_audit)
    assert any(a.action == "exchange.apply" and a.actor == "client:node:province"
               for a in city_audit)  # fmt: skip
    assert any(a.action == "nodes.read" and a.outcome == "denied" for a in province_audit)
    refusals = [a.detail for a in city_audit if a.action == "nodes.authenticate"]
    assert {"no node signature", "unknown node", "replayed", "revoked node"} <= set(refusals)
    assert len(refusals) >= 8

    for node in (w.city, w.province):
        verified = node.cli("audit", "verify")
        assert verified.exit_code == 0, verified.output
        assert "intact" in verified.output
