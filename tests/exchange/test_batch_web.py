"""Batch exchange over HTTP: the API and the consumer's page offer the same, on the real app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.exchange import batch, sinks
from minyun.web.app import create_app
from tests import factories
from tests.exchange.batchkit import audit_actions, grant, open_node, world
from tests.query.test_query_api import signed_in


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Platform]:
    made = open_node(tmp_path)
    yield made
    made.close()


def test_subscribe_deliver_download_and_verify_through_the_api(node: Platform) -> None:
    w = world(node, rows=25)
    grant(w, ["id", "name", "city"], row_filter="id <= 20")
    app = create_app(node)
    with TestClient(app) as http:
        _, bearer = factories.api_client_token(
            http, node, w.consumer_id, ["resource.read", "exchange.apply"]
        )
        bad = http.post(
            "/api/v1/subscriptions", headers=bearer,
            json={"resource": w.code, "sink": {"kind": "ftp"}, "purpose": "社保核验"},
        )  # fmt: skip
        assert bad.status_code == 422 and bad.json()["type"].endswith("/unknown-sink")
        away = http.post(
            "/api/v1/subscriptions", headers=bearer,
            json={"resource": w.code, "purpose": "社保核验", "sink": {
                "kind": "postgresql", "dsn": "postgresql://u:pw@127.0.0.1:1/x", "table": "t"}},
        )  # fmt: skip
        assert away.status_code == 422 and away.json()["type"].endswith("/sink-unreachable")
        assert "pw" not in away.text
        denied = audit_actions(node, "exchange.subscribe", "denied")
        assert len(denied) == 2 and "cannot connect" in (denied[1].detail or "")
        made = http.post(
            "/api/v1/subscriptions", headers=bearer,
            json={"resource": w.code, "mode": "full", "purpose": "社保核验",
                  "sink": {"kind": "file", "format": "csv"}},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        sub = made.json()["id"]
        queued = http.post(f"/api/v1/subscriptions/{sub}/deliveries", headers=bearer)
        assert queued.status_code == 202 and queued.json()["state"] == "queued"
        jobs.run_pending(node.factory, node.dispatcher)
        listed = http.get(f"/api/v1/subscriptions/{sub}/deliveries", headers=bearer).json()
        assert [d["state"] for d in listed] == ["delivered"] and listed[0]["rows"] == 20
        d = listed[0]["id"]
        got = http.get(f"/api/v1/subscriptions/{sub}/deliveries/{d}/file", headers=bearer)
        assert got.status_code == 200 and got.content.startswith(sinks.BOM)
        assert got.content[3:].decode().splitlines()[0] == '"id","name","city"'
        signed = http.get(f"/api/v1/subscriptions/{sub}/deliveries/{d}/manifest", headers=bearer)
        assert signed.status_code == 200 and batch.verify_manifest(signed.json(), node.node_key)
        assert signed.json()["manifest"]["rows"] == 20
        assert (
            http.post(f"/api/v1/subscriptions/{sub}/deliveries", headers=bearer).status_code == 204
        )
        # Another department sees nothing of it.
        with node.factory.begin() as session:
            other = factories.make_org(session).id
        _, stranger = factories.api_client_token(http, node, other, ["resource.read"])
        assert http.get(f"/api/v1/subscriptions/{sub}", headers=stranger).status_code == 404
        stolen = http.get(f"/api/v1/subscriptions/{sub}/deliveries/{d}/file", headers=stranger)
        assert stolen.status_code == 404
        assert http.get("/api/v1/subscriptions", headers=stranger).json() == []

        # The consumer's page: the same subscription, its delivery and the download link.
        page = signed_in(app, node, ["consumer"], w.consumer_id)
        html = page.get("/sharing/subscriptions")
        assert html.status_code == 200 and w.code in html.text
        link = f"/sharing/subscriptions/{sub}/deliveries/{d}/file"
        assert link in html.text
        assert page.get(link).content == got.content
        csrf = re.search(r'name="csrf" value="([^"]+)"', html.text)
        assert csrf is not None
        refused = page.post(
            "/sharing/subscriptions",
            data={"csrf": csrf.group(1), "resource": w.code, "mode": "incremental",
                  "kind": "folder", "format": "csv", "folder": "/etc", "purpose": "核验"},
        )  # fmt: skip
        assert refused.status_code == 422 and "本节点不向该文件夹交付" in refused.text
        made_page = page.post(
            "/sharing/subscriptions",
            data={"csrf": csrf.group(1), "resource": w.code, "mode": "incremental",
                  "kind": "file", "format": "parquet", "purpose": "核验", "every_minutes": "60"},
        )  # fmt: skip
        assert made_page.status_code == 303
        assert len(http.get("/api/v1/subscriptions", headers=bearer).json()) == 2
