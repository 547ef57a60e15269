"""`minyun load`, `minyun versions`, `minyun rejects` run as an operator would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minyun.cli import app
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from tests.ingest.loadkit import make_resource, person, write_csv

runner = CliRunner()


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    var = tmp_path / "var"
    monkeypatch.setenv("MINYUN_VAR_DIR", str(var))
    for name in ("MINYUN_DATABASE_URL", "MINYUN_JOBS_MODE", "MINYUN_LAKE_URI"):
        monkeypatch.delenv(name, raising=False)
    assert runner.invoke(app, ["init"]).exit_code == 0
    platform = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    return platform


def test_load_versions_and_rejects(node: Platform, tmp_path: Path) -> None:
    code, _ = make_resource(node)
    src = write_csv(tmp_path / "p.csv", [person(i) for i in range(1, 5)] + [person(5, score=500)])
    loaded = runner.invoke(app, ["load", code, str(src)])
    assert loaded.exit_code == 0, loaded.output
    assert "version 0" in loaded.output and "4 rows accepted, 1 rejected of 5 read" in loaded.output
    again = runner.invoke(app, ["load", code, str(src)])
    assert again.exit_code == 0 and "nothing to do" in again.output
    gbk = write_csv(tmp_path / "g.csv", [person(i, name="闽") for i in range(1, 3)], encoding="gbk")
    appended = runner.invoke(app, ["load", code, str(gbk), "--mode", "upsert", "--encoding", "gbk"])
    assert appended.exit_code == 0, appended.output
    listed = json.loads(runner.invoke(app, ["versions", code, "--json"]).output)
    assert [(v["lake_version"], v["state"], v["rows_read"], v["rows_accepted"], v["rows_rejected"])
            for v in listed] == [(1, "committed", 2, 2, 0), (None, "noop", 0, 0, 0), (0, "committed", 5, 4, 1)]  # fmt: skip
    table = runner.invoke(app, ["versions", code])
    assert table.exit_code == 0 and f"versions of {code}" in table.output
    rejects = json.loads(runner.invoke(app, ["rejects", code, "--json"]).output)
    assert [(r["row_number"], r["field"], r["reason"]) for r in rejects] == [
        (5, "score", "above the maximum 100")
    ]
    plain = runner.invoke(app, ["rejects", code, "--version", str(listed[-1]["id"])])
    assert plain.exit_code == 0 and "score" in plain.output


def test_bad_file_exits_1_with_the_reason(node: Platform, tmp_path: Path) -> None:
    code, _ = make_resource(node)
    src = tmp_path / "bad.csv"
    src.write_text("a;b\n1;2\n")
    result = runner.invoke(app, ["load", code, str(src)])
    assert result.exit_code == 1 and "header does not match" in result.output
    missing = runner.invoke(app, ["load", "no-such-resource", str(src)])
    assert missing.exit_code == 1 and "no resource" in missing.output


def test_a_cli_load_runs_the_jobs_it_queued_before_exiting(node: Platform, tmp_path: Path) -> None:
    from sqlalchemy import select

    from minyun.core import jobs

    code, _ = make_resource(node)
    src = write_csv(tmp_path / "p.csv", [person(i) for i in range(1, 4)])
    loaded = runner.invoke(app, ["load", code, str(src)])
    assert loaded.exit_code == 0, loaded.output
    with node.factory() as s:
        found = {(j.kind, j.state) for j in s.scalars(select(jobs.Job))}
    # No server ever ran: the load's quality report and index refresh ran in the command.
    assert found == {
        ("ingest.load", "succeeded"),
        ("ingest.quality", "succeeded"),
        ("serving.refresh", "succeeded"),
    }
    assert "ingest.quality" in loaded.output and "serving.refresh" in loaded.output
