"""Kill -9 under load: every read whose 2xx the client received has its audit record.

A real server (uvicorn, two worker processes, a PostgreSQL node) answers audited reads
from several clients; the whole process group is killed without warning mid-load; after a
restart every request id the clients saw answered 2xx is in the chain, and
`minyun audit verify` says intact.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from tests import factories
from tests.browser import _free_port
from tests.conftest import PostgresDatabases

pytestmark = pytest.mark.postgres
CLIENTS = 6
KILL_AFTER = 150  # acknowledged reads before the kill


@contextmanager
def _server(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "uvicorn", "minyun.web.asgi:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _signed_in(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    response = client.post(
        "/login",
        data={"username": username, "password": factories.PASSWORD, "csrf": found.group(1)},
    )
    assert response.status_code == 303, response.text
    return client


def _load(client: httpx.Client, acked: list[str], stop: threading.Event) -> None:
    while not stop.is_set():
        request_id = f"crash-{uuid.uuid4().hex}"
        try:
            response = client.get(
                "/api/v1/audit", params={"limit": 1}, headers={"X-Request-ID": request_id}
            )
        except httpx.HTTPError:
            return  # the server is gone
        if response.is_success:
            assert response.headers["x-request-id"] == request_id
            acked.append(request_id)


def test_kill_9_under_load_loses_no_acknowledged_audit_record(
    tmp_path: Path, pg_databases: PostgresDatabases
) -> None:
    var, url = tmp_path / "var", pg_databases.create()
    env = os.environ | {"MINYUN_VAR_DIR": str(var), "MINYUN_DATABASE_URL": url}
    env.pop("MINYUN_JOBS_MODE", None)
    minyun = [sys.executable, "-m", "minyun"]
    subprocess.run([*minyun, "init"], env=env, check=True, capture_output=True)
    node = Platform.open(load_settings(var_dir=var, database_url=url))
    with node.factory.begin() as s:
        auditor = factories.make_user(s, roles=["auditor"]).username
    node.close()

    port = _free_port()
    acked: list[str] = []
    stop = threading.Event()
    with _server(env, port) as server:
        clients = [_signed_in(f"http://127.0.0.1:{port}", auditor) for _ in range(CLIENTS)]
        threads = [threading.Thread(target=_load, args=(c, acked, stop)) for c in clients]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(acked) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(server.pid, signal.SIGKILL)  # no shutdown, no flush: the power cord
        server.wait()
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert len(acked) >= KILL_AFTER

    with _server(env, port):
        node = Platform.open(load_settings(var_dir=var, database_url=url))
        with node.factory() as s:
            stored = set(s.scalars(select(AuditRecord.request_id)))
        node.close()
        missing = [r for r in acked if r not in stored]
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged reads have no record"
        verify = subprocess.run(
            [*minyun, "audit", "verify"], env=env, capture_output=True, text=True
        )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "intact" in verify.stdout
