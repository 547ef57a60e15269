"""The `minyun` command line, run as a user would, against a real var folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from minyun.cli import app
from minyun.core import audit
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from tests.core.test_audit import drop_sqlite_append_only

runner = CliRunner()


def test_init_creates_the_embedded_node_once(var: Path) -> None:
    assert (var / "minyun.db").exists() and (var / "secret.key").exists()
    again = runner.invoke(app, ["init"])
    assert again.exit_code == 0 and "0 divisions added" in again.output


def test_audit_verify_reports_intact_then_the_first_tampered_record(var: Path) -> None:
    node = Platform.open(load_settings(var_dir=var))
    with node.factory.begin() as s:
        for i in range(5):
            audit.record(s, Principal(kind="user", name="li"), "test.read", target=str(i))
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact" in ok.output and "5 records" in ok.output
    with node.factory.begin() as s:
        drop_sqlite_append_only(s)  # an attacker who can write the database file
        s.execute(text("UPDATE audit_records SET purpose = 'edited' WHERE seq = 3"))
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "record 3" in broken.output and "altered" in broken.output
    node.close()


def test_user_create_reads_the_password_from_stdin(var: Path) -> None:
    from tests.factories import make_uscc

    made = runner.invoke(app, ["org", "create", "fj-amr", "--name", "福建省市场监督管理局",
                               "--division", "350000", "--uscc", make_uscc(7001, "350000")])  # fmt: skip
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        app,
        ["user", "create", "wang.fang", "--org", "fj-amr", "--role", "steward", "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "created wang.fang (steward)" in result.output
    again = runner.invoke(
        app,
        ["user", "create", "wang.fang", "--org", "fj-amr", "--password-stdin"],
        input="another long password\n",
    )
    assert again.exit_code == 1 and "taken" in again.output


def test_bad_configuration_is_one_clear_message(var: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINYUN_JOBS_MODE", "whenever")
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 2 and "MINYUN_JOBS_MODE" in result.output


def test_jobs_list_shows_the_demo_load(var: Path) -> None:
    result = runner.invoke(app, ["demo", "--persons", "1000", "--enterprises", "100"])
    assert result.exit_code == 0, result.output
    assert "steward" in result.output and "auditor" in result.output
    # The demo also loads its catalog resources: an ingest.load job each, and the
    # serving.refresh and ingest.quality jobs each committed version queues.
    listing = runner.invoke(app, ["jobs", "list", "--limit", "500"])
    assert "demo.load" in listing.output and "succeeded" in listing.output
    assert "failed" not in listing.output
    # They ran in the command: none waits for a server.
    assert "queued" not in listing.output and "running" not in listing.output


def _queue_a_job(var: Path, **fields: object) -> str:
    from minyun.core import jobs

    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    with node.factory.begin() as s:
        job = jobs.submit(s, Principal.system(), "demo.load", {"persons": 0, "enterprises": 0})
        for name, value in fields.items():
            setattr(job, name, value)
        job_id = job.id
    node.close()
    return job_id


def test_jobs_cancel_stops_a_job_for_good(var: Path) -> None:
    job_id = _queue_a_job(var)
    cancelled = runner.invoke(app, ["jobs", "cancel", job_id[:12]])
    assert cancelled.exit_code == 0, cancelled.output
    assert f"job {job_id} cancelled" in cancelled.output
    again = runner.invoke(app, ["jobs", "cancel", job_id[:12]])
    assert again.exit_code == 1 and "already cancelled" in again.output
    ran = runner.invoke(app, ["jobs", "run"])
    assert ran.exit_code == 0 and "no queued jobs" in ran.output
    listing = runner.invoke(app, ["jobs", "list"])
    assert "cancelled" in listing.output
    unknown = runner.invoke(app, ["jobs", "cancel", "0123456789ab"])
    assert unknown.exit_code == 1 and "no job" in unknown.output


def test_a_killed_runners_job_is_taken_back_without_a_restart(var: Path) -> None:
    from datetime import timedelta

    from minyun.core import clock, jobs

    long_ago = clock.now() - jobs.STALE_AFTER - timedelta(seconds=5)
    job_id = _queue_a_job(var, state="running", lease="a-killed-load", heartbeat_at=long_ago)
    listing = runner.invoke(app, ["jobs", "list"])
    assert listing.exit_code == 0, listing.output
    assert "queued" in listing.output and "running" not in listing.output
    assert "1 queued" in listing.output and "minyun jobs run" in listing.output
    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    with node.factory() as s:
        job = jobs.get_job(s, job_id)
        assert (job.state, job.crashes, job.lease) == ("queued", 1, None)
    node.close()


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts processes in /proc")
def test_serve_with_two_workers_answers_from_two_worker_processes(var: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    minyun = Path(sys.executable).with_name("minyun")
    server = subprocess.Popen(
        [str(minyun), "serve", "--workers", "2", "--port", str(port)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline, answers = time.monotonic() + 120, 0
        while time.monotonic() < deadline and answers < 10 and server.poll() is None:
            try:
                answers += httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        assert answers == 10, server.stderr.read().decode() if server.poll() is not None else ""
        workers = [
            c
            for c in _children(server.pid)
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    assert server.returncode == 0
