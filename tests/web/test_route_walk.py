"""Walk every route of the app, API and pages, as an outsider and as a two-field reader.

A resource is loaded whose hidden fields have unmistakable names and values. Then every GET
route is requested:

- by an outsider (a civil servant of another department, and an anonymous caller): a route
  that returns resource data answers 401, 403 or 404 and leaves a denial in the audit log;
- by a consumer whose grant shows exactly two fields: no answer anywhere holds another
  field's value, and the data routes never even name another field.

A route the walk does not know how to call fails the test: a new route must be classified.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from minyun.core import audit, jobs, policies
from minyun.core.platform import Platform
from minyun.core.policies import DataResource, Verdict
from minyun.core.security import Principal
from minyun.ingest.models import Version
from minyun.web.app import create_app
from tests import factories
from tests.conftest import make_settings
from tests.ingest import loadkit
from tests.query.test_query_api import signed_in

SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "id", "type": "integer", "sensitivity": "public"},
        {"name": "city", "type": "string", "sensitivity": "internal"},
        {"name": "hidric", "type": "string", "format": "cn-ric", "sensitivity": "sensitive",
         "mask": "keep(6,4)"},
        {"name": "hidphone", "type": "string", "sensitivity": "secret", "mask": "keep(3,4)"},
        {"name": "hidnote", "type": "string", "sensitivity": "secret"},
        {"name": "hidsex", "type": "string", "constraints": {"enum": ["M", "F"]}},
    ],
    "primaryKey": ["id"],
}  # fmt: skip
HIDDEN = ("hidric", "hidphone", "hidnote", "hidsex")
# Routes that return a resource's data: the outsider must be refused there.
DATA_ROUTES = {
    "/api/v1/resources/{code}/rows",
    "/api/v1/resources/{code}/rows/{key}",
    "/api/v1/resources/{code}/rejects",
    "/catalog/{code}/versions/{version}/rejects",
    "/catalog/{code}/versions/{version}/rejects.csv",
    "/catalog/{code}/preview",
    # Nodes: a city's rows read through this node, and the signed route a node reads them by.
    "/api/v1/nodes/{node_id}/resources/{code}/rows",
    "/api/v1/node-link/resources/{code}/rows",
}
# Routes that change something or end a session: not part of a read walk.
NOT_READS = {"/logout", "/lang/{locale}"}


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "city": "福州市", "hidric": loadkit.ric(i), "hidphone": f"1390000{i:04d}",
         "hidnote": f"NOTE{i:03d}SECRETZ", "hidsex": "MF"[i % 2]}
        for i in range(1, n + 1)
    ]  # fmt: skip


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    cols = [f["name"] for f in SCHEMA["fields"]]
    lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """The embedded node; its jobs run when the test runs them."""
    node = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    node.migrate()
    yield node
    node.close()


@pytest.fixture
def walk(platform: Platform, tmp_path: Path) -> Iterator[dict[str, Any]]:
    code, steward = loadkit.make_resource(platform, descriptor=SCHEMA)
    rows = _rows(8)
    bad = {**_rows(9)[-1], "hidsex": "?"}  # refused: kept in the rejects with its raw record
    job = loadkit.load(platform, steward, code, _write(tmp_path / "walk.csv", [*rows, bad]))
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    with platform.factory() as session:
        queued = session.scalars(select(jobs.Job.id).where(jobs.Job.state == "queued")).all()
    for job_id in queued:
        jobs.run(platform.factory, job_id)
    with platform.factory.begin() as session:
        consumer_org = factories.make_org(session)
        outsider_org = factories.make_org(session)
        provider = session.scalars(select(Version.resource_id)).first()
        assert provider is not None
        version = session.scalars(select(Version.id)).one()

    def grant(s: Any, actor: Principal, action: str, r: DataResource) -> Verdict | None:
        if actor.organization_id == consumer_org.id and action == policies.READ:
            return Verdict("grant", "secret", fields=frozenset({"id", "city"}))
        return None

    policies.GRANTS.register(grant)
    values = [str(r[h]) for r in [*rows, bad] for h in ("hidric", "hidphone", "hidnote")]
    try:
        yield {
            "code": code,
            "job": job.id,
            "version": version,
            "org": steward.organization_id,
            "consumer_org": consumer_org.id,
            "outsider_org": outsider_org.id,
            "values": values,
        }
    finally:
        policies.GRANTS.checks.remove(grant)


def _routes(app: FastAPI) -> Iterator[tuple[str, set[str]]]:
    def walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
        for r in routes:
            if hasattr(r, "original_router"):
                yield from walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif hasattr(r, "methods") and r.methods:
                yield prefix + r.path, set(r.methods)

    yield from walk(app.routes)


def _url(path: str, w: dict[str, Any]) -> str:
    params = {
        "code": w["code"], "key": "3", "job_id": w["job"], "alert_id": "1", "city": "350100",
        # The administration console and API (accounts, clients): administrators only.
        "user_id": "1", "client_id": "mc_walk", "action": "revoke",
        "version": w["version"],
        # Event subscriptions: the organisation's own only (none here: 404 for everyone).
        "subscription_id": "1",
        # Sharing: applications and grants are metadata of the two departments only.
        "application_id": "1", "grant_id": "1",
        # Batch subscriptions: the consumer department's own only (none here: 404).
        "delivery_id": "1",
        # Nodes: the registry and the cities' catalog (a node no one registered here).
        "node_id": "fuzhou",
        # Open data: datasets by name (none open here: 404), downloads and DCAT by format.
        "name": "no-such-dataset", "fmt": "csv",
        # Grid governance: Open311 documents (public by the spec) and the grid pages.
        "request_id": "1", "token": "walk", "photo_id": "1", "report_id": "1",
        # Food traceability (EPCIS): capture jobs, events, resources, named queries, products.
        # E-licences: an issuer's DID document (an organisation no one registered here).
        "org_code": "no-such-org", "purpose": "revocation", "licence_id": "1", "kid": "key-1",
        "holder": "no-such-holder",
        # One file per subject: files and review items (none here: 404).
        "subject_id": "1", "review_id": "1",
        "capture_id": "cap_walk", "event_id": "urn:uuid:walk",
        "resource": "bizSteps", "value": "shipping", "path": "01/06901234543216/10/T1",
        "gtin": "06901234543216", "lot": "T1", "serial": "1",
    }  # fmt: skip
    if path.startswith("/orgs/") or path.startswith("/api/v1/organizations/"):
        params["code"] = "350000000000"
    if path.startswith(("/eco/stations/", "/api/v1/eco/stations/")):
        params["code"] = "1001A"
    if path.startswith("/open311/"):
        params["fmt"] = "json"  # Open311's documents by format
    if path.startswith("/epcis/"):
        params["name"] = "walk"  # EPCIS named queries
    names = re.findall(r"{(\w+)}", path)
    unknown = [n for n in names if n not in params]
    assert not unknown, f"the walk does not know how to call {path}: classify it"
    return re.sub(r"{(\w+)}", lambda m: str(params[m.group(1)]), path)


def _denials(platform: Platform) -> int:
    with platform.factory() as session:
        return int(
            session.scalar(select(func.count()).where(audit.AuditRecord.outcome == "denied")) or 0
        )


def _bodies(response: Any) -> str:
    if response.headers.get("content-type", "").startswith("application/vnd.apache.parquet"):
        table = pq.read_table(io.BytesIO(response.content))
        return " ".join(table.column_names) + " " + str(table.to_pylist())
    return response.text


def test_every_route_keeps_to_the_plan(platform: Platform, walk: dict[str, Any]) -> None:
    app = create_app(platform)
    reads = [(p, m) for p, m in _routes(app) if "GET" in m and p not in NOT_READS]
    assert {p for p, _ in reads} >= DATA_ROUTES
    urls = []
    for path, _ in reads:
        if path.startswith("/static"):
            continue
        url = _url(path, walk)
        urls.append((path, url))
        if path == "/api/v1/resources/{code}/rows":
            urls += [(path, f"{url}?format=csv"), (path, f"{url}?format=parquet")]

    outsider = signed_in(app, platform, ["consumer", "steward"], walk["outsider_org"])
    addresses = itertools.count(1)

    def anonymous() -> TestClient:
        # An address per request: an address's anonymous refusals are recorded one by one only
        # within its budget (20 a minute), and the walk makes more than that.
        n = next(addresses)
        return TestClient(app, client=(f"10.93.{n // 250}.{n % 250 + 1}", 5000))

    for who in (lambda: outsider, anonymous):
        for path, url in urls:
            before = _denials(platform)
            r = who().get(url)
            assert r.status_code < 500, (url, r.text[:300])
            body = _bodies(r)
            for value in walk["values"]:
                assert value not in body, f"{url} showed {value} to an outsider"
            if path in DATA_ROUTES:
                assert r.status_code in (401, 403, 404), (url, r.status_code)
                assert _denials(platform) > before, f"{url}: refusal not audited"

    # The event log shows a resource's events only to those who may read the resource.
    assert outsider.get("/api/v1/events").json()["events"] == []
    assert anonymous().get("/api/v1/events").status_code == 401

    reader = signed_in(app, platform, ["consumer"], walk["consumer_org"])
    (updated,) = reader.get("/api/v1/events").json()["events"]
    assert (updated["type"], updated["subject"]) == ("resource.updated", walk["code"])
    for path, url in urls:
        r = reader.get(url)
        assert r.status_code < 500, (url, r.text[:300])
        body = _bodies(r)
        for value in walk["values"]:
            assert value not in body, f"{url} showed {value} to the two-field reader"
        if path in DATA_ROUTES:
            for name in HIDDEN:
                assert name not in body, f"{url} named the hidden field {name}"
    # The two-field reader really reads its two fields.
    got = reader.get(f"/api/v1/resources/{walk['code']}/rows/3").json()
    assert got["row"] == {"id": 3, "city": "福州市"}
    page = reader.get(f"/api/v1/resources/{walk['code']}/rows", params={"limit": 3}).json()
    assert [sorted(r) for r in page["rows"]] == [["city", "id"]] * 3


def test_the_provider_reads_what_the_walk_hides(platform: Platform, walk: dict[str, Any]) -> None:
    """The walk's values are really there: the provider's steward reads them in clear."""
    app = create_app(platform)
    steward = signed_in(app, platform, ["steward"], walk["org"])
    row = steward.get(f"/api/v1/resources/{walk['code']}/rows/3").json()["row"]
    assert row["hidnote"] == "NOTE003SECRETZ" and row["hidric"] == loadkit.ric(3)
    rejects = steward.get(f"/api/v1/resources/{walk['code']}/rejects").json()
    assert rejects and rejects[0]["record"]["hidnote"] == "NOTE009SECRETZ"
    # An administrator sees the rejects masked: keep(6,4) above its clearance, note dropped.
    admin = signed_in(app, platform, ["admin"], None)
    masked = admin.get(f"/api/v1/resources/{walk['code']}/rejects").json()[0]["record"]
    assert "hidnote" not in masked and masked["hidric"].count("*") == 8
