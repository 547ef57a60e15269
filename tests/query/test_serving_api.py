"""Key lookups through the API from the serving index, refreshed by the job a load queues."""

from __future__ import annotations

import threading
import time

import pytest
from deltalake import DeltaTable
from fastapi import FastAPI
from sqlalchemy import select, update

from minyun.core import jobs
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.core.serving import Facts, ServingRow, ServingState, submit_refresh
from minyun.web.app import create_app
from tests import factories
from tests.query.data import add_resource, people
from tests.query.test_query_api import signed_in

CODE = "ppl-served"


def _wait(platform: Platform, job_id: str, *, limit: float = 120) -> jobs.Job:
    deadline = time.monotonic() + limit
    while True:
        with platform.factory() as session:
            job = jobs.get_job(session, job_id)
        if job.finished or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


def test_lookup_is_served_from_the_index_with_the_lake_reads_bytes(
    app: FastAPI, platform: Platform
) -> None:
    with platform.factory.begin() as session:
        org = factories.make_org(session)
        resource = add_resource(
            session, platform.lake, provider_id=org.id, code=CODE,
            versions=[people(200)], primary_key=["id"],
        )  # fmt: skip
        resource_id = resource.id
        job = submit_refresh(session, resource, ["id"], lake_uri=platform.lake.uri)
    done = _wait(platform, job.id)
    assert done.state == jobs.JobState.SUCCEEDED, done.error
    assert done.result == {"written": 200, "lake_version": 0, "rows": 200}

    with signed_in(app, platform, ["steward"], org.id) as client:
        url = f"/api/v1/resources/{CODE}/rows"
        for key in (7, 150, 999):
            for fmt in ("json", "csv"):
                served = client.get(url, params={"filter": f"id = {key}", "format": fmt})
                read = client.get(
                    url, params={"filter": f"id = {key}", "format": fmt, "version": 0}
                )
                assert served.status_code == read.status_code == 200, served.text
                assert served.content == read.content
                assert served.headers["x-resource-version"] == "0"
        body = client.get(url, params={"filter": "id = 7"}).json()
        assert len(body["rows"]) == 1 and body["rows"][0]["born"].count("-") == 2

        # The index really answers: a marked row comes back.
        with platform.factory.begin() as session:
            session.execute(
                update(ServingRow)
                .where(ServingRow.resource_id == resource_id, ServingRow.key == '["7"]')
                .values(row={**body["rows"][0], "name": "索引"})
            )
        assert client.get(url, params={"filter": "id = 7"}).json()["rows"][0]["name"] == "索引"

        # A new version the index has not seen: the lake answers until the refresh runs.
        DeltaTable(platform.lake.table_uri(CODE)).merge(
            people(10, seed=3), "t.id = s.id", source_alias="s", target_alias="t"
        ).when_matched_update_all().execute()
        with platform.factory.begin() as session:
            session.execute(
                update(type(resource))
                .where(type(resource).id == resource_id)
                .values(lake_version=1)
            )
        assert client.get(url, params={"filter": "id = 7"}).json()["rows"][0]["name"] == "居民00007"
        with platform.factory.begin() as session:
            again = submit_refresh(
                session, Facts(resource_id, CODE, 1), ["id"], lake_uri=platform.lake.uri
            )
        assert _wait(platform, again.id).state == jobs.JobState.SUCCEEDED
        with platform.factory() as session:
            state = session.get(ServingState, resource_id)
            assert state is not None and state.lake_version == 1
        served = client.get(url, params={"filter": "id = 7"})
        assert served.json()["version"] == 1 and served.json()["rows"][0]["name"] == "居民00007"
        assert served.content == client.get(url, params={"filter": "id = 7", "version": 1}).content

    with platform.factory() as session:
        reads = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "resource.read")
        ).all()
    assert reads and all(r.outcome == "success" for r in reads)
    assert {tuple(r.record_keys or ()) for r in reads} == {("7",), ("150",), ()}
    assert len(reads) == 3 * 2 * 2 + 5  # one record per request, served or read


def test_no_refresh_job_without_the_loads_commit(platform: Platform) -> None:
    with pytest.raises(RuntimeError), platform.factory.begin() as session:
        submit_refresh(session, Facts(1, "never", 0), ["id"], lake_uri=platform.lake.uri)
        raise RuntimeError("the load failed after queueing")
    with platform.factory() as session:
        assert (
            session.scalars(select(jobs.Job).where(jobs.Job.kind == "serving.refresh")).all() == []
        )


def test_requests_are_answered_while_a_large_index_is_built(
    app: FastAPI, platform: Platform
) -> None:
    """The refresh of a few hundred thousand rows on SQLite holds the write lock only for
    one batch at a time: every request made meanwhile (each writes its audit record) is
    answered, and the index serves nothing for the resource until it is whole."""
    from sqlalchemy import event

    rows = 300_000
    with platform.factory.begin() as session:
        org = factories.make_org(session)
        big = add_resource(
            session, platform.lake, provider_id=org.id, code="ppl-big",
            versions=[people(rows)], primary_key=["id"],
        )  # fmt: skip
        add_resource(
            session, platform.lake, provider_id=org.id, code=CODE,
            versions=[people(20)], primary_key=["id"],
        )  # fmt: skip
        big_id = big.id

    # Requests give up after 5 s of waiting for the lock (the node's own limit is 30 s): a
    # refresh holding it for the whole build fails them.
    @event.listens_for(platform.engine, "connect")
    def shorter_wait(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=5000")  # type: ignore[attr-defined]

    platform.engine.dispose()
    done_refreshing = threading.Event()
    polls: list[tuple[int, bool, bool]] = []  # (status, during the build, half-built serving?)
    answers: list[int] = []

    def poll() -> None:
        with signed_in(app, platform, ["steward"], org.id) as client:
            url = f"/api/v1/resources/{CODE}/rows"
            big_url = "/api/v1/resources/ppl-big/rows"
            while not done_refreshing.is_set():
                with platform.factory() as session:
                    state = session.get(ServingState, big_id)
                    building = state is not None and state.building is not None
                    partial = building and state is not None and state.lake_version is not None
                answer = client.get(url, params={"filter": "id = 7"})
                looked = client.get(big_url, params={"filter": f"id = {rows}"})
                polls.append((answer.status_code, building, partial))
                polls.append((looked.status_code, building, partial))
                if looked.status_code == 200:
                    answers.append(looked.json()["rows"][0]["id"])

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        while not polls:  # the poller is signed in and answered
            time.sleep(0.05)
        with platform.factory.begin() as session:  # this node runs the job in a thread
            job = submit_refresh(
                session, Facts(big_id, "ppl-big", 0), ["id"], lake_uri=platform.lake.uri
            )
        refreshed = _wait(platform, job.id)
    finally:
        done_refreshing.set()
        poller.join()
    assert refreshed.state == jobs.JobState.SUCCEEDED, refreshed.error
    assert refreshed.result == {"written": rows, "lake_version": 0, "rows": rows}
    assert polls and all(status == 200 for status, _, _ in polls), polls
    assert sum(1 for _, building, _ in polls if building) >= 4  # polls during the build
    assert not any(partial for _, _, partial in polls)  # a half-built index never serves
    assert answers and set(answers) == {rows}  # the lake answered meanwhile, then the index
