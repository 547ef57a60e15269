"""`minyun exchange`: subscribe a department, deliver with progress, list, read the manifest."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from minyun.cli import app
from minyun.core.platform import Platform
from minyun.orgs.models import Organization
from tests.conftest import make_settings
from tests.exchange.batchkit import grant, load, people, world


def test_subscribe_deliver_list_and_manifest_from_the_command_line(var: Path) -> None:
    node = Platform.open(make_settings(var), run_jobs_here=False)
    try:
        w = world(node, rows=15)
        grant(w, ["id", "city"])
        with node.factory() as session:
            org = session.get(Organization, w.consumer_id)
            assert org is not None
            code = org.code
    finally:
        node.close()
    cli = CliRunner()
    made = cli.invoke(
        app, ["exchange", "subscribe", code, w.code, "--purpose", "统计比对", "--sink", "file",
              "--format", "parquet"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "subscription 1" in made.output
    first = cli.invoke(app, ["exchange", "deliver", "1"])
    assert first.exit_code == 0, first.output
    assert "full (None, 0], 15 rows" in first.output
    assert "nothing new" in cli.invoke(app, ["exchange", "deliver", "1"]).output
    node = Platform.open(make_settings(var), run_jobs_here=False)
    try:
        w.node = node
        load(w, "upsert", people([3, 16], salt=2))
    finally:
        node.close()
    second = cli.invoke(app, ["exchange", "deliver", "--due"])
    assert second.exit_code == 0 and "nothing new" in second.output  # on demand: never due
    changed = cli.invoke(app, ["exchange", "deliver", "1"])
    assert changed.exit_code == 0 and "changes (0, 1], 2 rows" in changed.output, changed.output
    listed = json.loads(cli.invoke(app, ["exchange", "subscriptions", "--json"]).output)
    assert listed[0]["delivered_version"] == 1 and listed[0]["consumer"] == code
    shown = cli.invoke(app, ["exchange", "manifest", "1", "2"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["manifest"]["changes"] == {"upsert": 2}
    refused = cli.invoke(app, ["exchange", "subscribe", code, w.code, "--purpose", "x",
                               "--sink", "postgresql", "--dsn", "postgresql://u@127.0.0.1:1/x",
                               "--table", "t"])  # fmt: skip
    assert refused.exit_code == 1 and "cannot connect" in refused.output
