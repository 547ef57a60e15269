"""The steward's work on the command line, through the same services as the pages: a schema
from a sample, rejects by reason, retire and restore with a reason."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from minyun.catalog import service
from minyun.catalog.models import ResourceStatus
from minyun.cli import app
from minyun.core import audit
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from tests import factories
from tests.ingest.loadkit import person, write_csv

runner = CliRunner()


def test_a_resource_from_a_sample_then_rejects_by_reason_retire_and_restore(
    var: Path, tmp_path: Path
) -> None:
    node = Platform.open(load_settings(var_dir=var))
    with node.factory.begin() as s:
        org = factories.make_org(s)
    node.close()
    sample = write_csv(tmp_path / "人口.csv", [person(n) for n in range(1, 41)])
    inferred = runner.invoke(app, ["resource", "infer", str(sample)])
    assert inferred.exit_code == 0, inferred.output
    schema = json.loads(inferred.output)
    assert schema["primaryKey"] == ["ric"]
    assert {f["name"]: f.get("format") for f in schema["fields"]}["ric"] == "cn-ric"
    (tmp_path / "schema.json").write_text(inferred.output, "utf-8")
    created = runner.invoke(app, [
        "resource", "create", "cli-pop", "--name", "人口信息", "--provider", org.code,
        "--schema", str(tmp_path / "schema.json"), "--sharing", "unconditional",
        "--open", "unconditional", "--publish",
    ])  # fmt: skip
    assert created.exit_code == 0, created.output

    rows = [person(n) for n in range(1, 81)]
    rows[2]["name"] = None
    rows[5]["birth"] = "1980-02-30"
    loaded = runner.invoke(app, ["load", "cli-pop", str(write_csv(tmp_path / "l.csv", rows))])
    assert loaded.exit_code == 0, loaded.output
    only = runner.invoke(app, ["rejects", "cli-pop", "--reason", "required", "--json"])
    assert only.exit_code == 0, only.output
    assert [(r["row_number"], r["field"]) for r in json.loads(only.output)] == [(3, "name")]

    missing = runner.invoke(app, ["resource", "retire", "cli-pop"])
    assert missing.exit_code == 2  # the reason is required
    retired = runner.invoke(app, ["resource", "retire", "cli-pop", "--reason", "停止更新"])
    assert retired.exit_code == 0 and "retired" in retired.output
    again = runner.invoke(app, ["load", "cli-pop", str(tmp_path / "l.csv")])
    assert again.exit_code == 1 and "retired" in again.output  # no new loads
    restored = runner.invoke(app, ["resource", "restore", "cli-pop", "--reason", "恢复更新"])
    assert restored.exit_code == 0 and "published" in restored.output

    node = Platform.open(load_settings(var_dir=var))
    try:
        with node.factory() as s:
            assert service.get_resource(s, "cli-pop").status == ResourceStatus.PUBLISHED
            records = s.scalars(
                select(audit.AuditRecord)
                .where(audit.AuditRecord.action.in_(["resource.retire", "resource.restore"]))
                .order_by(audit.AuditRecord.seq)
            ).all()
            assert [(r.action, r.purpose) for r in records] == [
                ("resource.retire", "停止更新"),
                ("resource.restore", "恢复更新"),
            ]
    finally:
        node.close()


def test_infer_of_a_gbk_sample_says_to_give_its_encoding(var: Path, tmp_path: Path) -> None:
    sample = tmp_path / "gbk.csv"
    sample.write_bytes("姓名,年龄\n林闽,30\n".encode("gbk"))
    refused = runner.invoke(app, ["resource", "infer", str(sample)])
    assert refused.exit_code == 1 and "encoding" in refused.output
    done = runner.invoke(app, ["resource", "infer", str(sample), "--encoding", "gbk"])
    assert done.exit_code == 0 and json.loads(done.output)["fields"][1]["type"] == "integer"
