"""`minyun resource create`, run as a user would, against a real var folder."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from minyun.catalog import service
from minyun.cli import app
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from tests import factories

runner = CliRunner()


def test_resource_create_registers_and_publishes(var: Path, tmp_path: Path) -> None:
    node = Platform.open(load_settings(var_dir=var))
    with node.factory.begin() as s:
        org = factories.make_org(s)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(factories.person_schema(), ensure_ascii=False), "utf-8")
    args = ["resource", "create", "cli-res", "--name", "命令行资源", "--provider", org.code,
            "--schema", str(schema), "--theme", "社保就业", "--summary", "摘要"]  # fmt: skip
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "legal basis" in refused.output
    done = runner.invoke(app, [*args, "--legal-basis", "《社会保险法》", "--publish"])
    assert done.exit_code == 0, done.output
    assert "cli-res" in done.output and "published" in done.output and "1.0" in done.output
    with node.factory() as s:
        resource = service.get_resource(s, "cli-res")
        assert (resource.theme, resource.sharing_type) == ("employment", "conditional")
    node.close()


def test_resource_create_with_unreadable_schema_is_a_usage_error(var: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", "utf-8")
    result = runner.invoke(
        app,
        [
            "resource",
            "create",
            "x-res",
            "--name",
            "某资源",
            "--provider",
            "p",
            "--schema",
            str(bad),
        ],
    )
    assert result.exit_code == 2 and "not JSON" in result.output
