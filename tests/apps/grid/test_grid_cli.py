"""`minyun grid`: set up Gulou, create, list and revoke an Open311 key."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from minyun.cli import app


def test_grid_setup_and_api_keys(var: Path) -> None:
    runner = CliRunner()
    setup = runner.invoke(app, ["grid", "setup"])
    assert setup.exit_code == 0, setup.output
    assert "155 areas added" in setup.output
    created = runner.invoke(app, ["grid", "api-key", "create", "fixmystreet"])
    assert created.exit_code == 0, created.output
    key = created.output.strip()
    assert key.startswith("o311_") and len(key) > 30
    again = runner.invoke(app, ["grid", "api-key", "create", "fixmystreet"])
    assert again.exit_code == 1 and "exists" in again.output
    listed = runner.invoke(app, ["grid", "api-key", "list"])
    assert "fixmystreet" in listed.output and "active" in listed.output and key not in listed.output
    revoked = runner.invoke(app, ["grid", "api-key", "revoke", "fixmystreet"])
    assert revoked.exit_code == 0
    assert "revoked" in runner.invoke(app, ["grid", "api-key", "list"]).output
    assert runner.invoke(app, ["grid", "escalate"]).output.strip() == "0 tasks escalated"
