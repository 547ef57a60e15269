"""`minyun subjects resolve` and `minyun subjects links`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minyun.cli import app
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from tests.subjects.kit import load_population


def test_resolve_then_write_the_links_file(var: Path, tmp_path: Path) -> None:
    node = Platform.open(load_settings(), run_jobs_here=False)
    try:
        _, truth, _ = load_population(node, tmp_path, 150)
    finally:
        node.close()
    runner = CliRunner()
    result = runner.invoke(app, ["subjects", "resolve", "--kind", "person"])
    assert result.exit_code == 0, result.output
    assert "full run" in result.output and "链接 link" in result.output
    again = runner.invoke(app, ["subjects", "resolve"])
    assert "unchanged run" in again.output, again.output
    out = tmp_path / "links.csv"
    result = runner.invoke(app, ["subjects", "links", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").splitlines()[0] == "resource,row_key,subject_id"
    with out.open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["resource", "row_key", "subject_id"]
    assert len(rows) - 1 == truth.num_rows
    assert {r[0] for r in rows[1:]} == set(truth["resource"].to_pylist())
    assert all(r[2].startswith("P") and len(r[2]) == 11 for r in rows[1:])
    first, second = (f"{r[0]}|{r[1]}" for r in rows[1:3])
    result = runner.invoke(app, ["subjects", "explain", first, second])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == [
        "prior", "ric", "name", "birth_date", "sex", "phone", "address", "total",
    ]  # fmt: skip


def test_a_bad_kind_is_refused(var: Path) -> None:
    result = CliRunner().invoke(app, ["subjects", "resolve", "--kind", "dog"])
    assert result.exit_code != 0


def test_the_engine_comes_from_the_node_configuration(
    var: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from minyun.subjects.models import SubjectRun

    monkeypatch.setenv("MINYUN_SUBJECTS_ENGINE", "spark")
    result = CliRunner().invoke(app, ["subjects", "resolve", "--kind", "enterprise"])
    assert result.exit_code == 0, result.output
    assert "empty run" in result.output  # no enterprise resource yet: Spark is not started
    node = Platform.open(load_settings(), run_jobs_here=False)
    try:
        with node.factory() as session:
            assert session.scalars(select(SubjectRun.engine)).all() == ["spark"]
    finally:
        node.close()
