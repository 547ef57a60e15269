"""A schemathesis run over the OpenAPI schema: no request gets a server error (issue 11, item 8).

Every operation of `/api/openapi.json` is called with requests generated from the schema,
valid and invalid ones (integers of 2^63, odd strings, missing fields), on the embedded node
(SQLite) holding a loaded resource. Each generated request goes three times: as a signed-in
administrator (session cookie), as the resource provider's API client (bearer token with the
data scopes) and anonymously. The only check is `not_a_server_error`: a bad request answers
4xx problem+json, never 5xx.

Half the generated requests name things that exist on the node (the resource's code, a key, the
load's job) so they reach past the 404. The run is derandomised (the same requests every time),
stops at the first failure of an operation without shrinking, reports every failing operation,
and its examples are bounded so it takes about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from minyun.accounts import service as accounts
from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.orgs.models import Organization
from minyun.web.app import create_app
from tests.conftest import make_settings
from tests.ingest import loadkit
from tests.query.test_query_api import signed_in

EXAMPLES = 25  # per operation; each example is sent three times (admin, API client, anonymous)
SCOPES = [
    "catalog.read", "eco.read", "events.read", "events.subscribe", "jobs.read", "jobs.submit", "org.read", "resource.create",
    "resource.edit", "resource.load", "resource.publish", "resource.quality.read",
    "resource.read", "resource.rejects.read",
]  # fmt: skip


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The node, its app, and the three callers' credentials."""
    tmp = tmp_path_factory.mktemp("fuzz")
    node = Platform.open(make_settings(tmp / "var"), run_jobs_here=False)
    node.migrate()
    code, steward = loadkit.make_resource(node)
    rows = [loadkit.person(n) for n in range(1, 21)]
    job = loadkit.load(node, steward, code, loadkit.write_csv(Path(tmp / "p.csv"), rows))
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    app = create_app(node)
    admin = signed_in(app, node, ["admin"], None)
    with node.factory.begin() as session:
        org = session.get(Organization, steward.organization_id)
        assert org is not None
        known = {"code": code, "org": org.code, "key": "3", "job_id": job.id, "city": "350100"}
        new = accounts.create_client(
            session,
            Principal.system(),
            organization_id=steward.organization_id or 0,
            name="fuzz",
            scopes=SCOPES,
        )
    token = admin.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(new.client.client_id, new.secret),
    )
    assert token.status_code == 200, token.text
    try:
        yield {
            "schema": schemathesis.openapi.from_asgi("/api/openapi.json", app),
            "admin": dict(admin.cookies),
            "origin": node.settings.base_url,  # cookie changes come from our own pages
            "bearer": f"Bearer {token.json()['access_token']}",
            "known": known,
        }
    finally:
        asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan open otherwise
        node.close()


def _operations(schema: Any) -> list[Any]:
    found = []
    for result in schema.get_all_operations():
        found.append(result.ok())  # an operation the schema cannot describe fails here
    return found


def _known(path: str, known: dict[str, Any]) -> dict[str, str]:
    """Path values that exist on the node: half the requests reach past the 404."""
    found = {name: str(known[name]) for name in ("code", "key", "job_id", "city")}
    if path.startswith("/api/v1/organizations/"):
        found["code"] = known["org"]
    return found


def _with_known(case: Any, use: bool, known: dict[str, str]) -> Any:
    if use and case.path_parameters:
        for name in case.path_parameters:
            if name in known:
                case.path_parameters[name] = known[name]
    return case


@pytest.mark.slow
def test_no_request_gets_a_server_error(fuzz: dict[str, Any]) -> None:
    callers: list[dict[str, Any]] = [
        {"cookies": fuzz["admin"], "headers": {"Origin": fuzz["origin"]}},
        {"headers": {"Authorization": fuzz["bearer"]}},
        {},
    ]
    failures: list[str] = []
    operations = _operations(fuzz["schema"])
    assert len(operations) > 20

    for operation in operations:
        known = _known(operation.path, fuzz["known"])
        generated = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        cases = st.tuples(generated, st.booleans()).map(lambda t, k=known: _with_known(*t, k))

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            for caller in callers:
                case.call_and_validate(checks=[not_a_server_error], **caller)

        import time as _t

        _s = _t.perf_counter()
        try:
            call()
            print("TIMING", operation.label, round(_t.perf_counter() - _s, 2), flush=True)
        except Exception as exc:  # one report for every operation that failed
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
