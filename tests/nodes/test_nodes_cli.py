"""`minyun nodes`: this node's identity, the registry from the command line, publishing, and
the `nodes.publish` job."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from minyun.cli import app
from minyun.core import jobs
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.nodes.jobs import submit_publish

runner = CliRunner()
KEY = "yvNKjFz-Vbc6BTF3AriCz7C5wJ28E5cbPAEBzYgK4wE"


def test_the_registry_from_the_command_line(var: Path) -> None:
    me = runner.invoke(app, ["nodes", "self", "--json"])
    assert me.exit_code == 0, me.output
    identity = json.loads(me.output)
    assert identity["node_id"] == "fujian-province" and len(identity["public_key"]) == 43

    refused = runner.invoke(app, ["nodes", "add", "fuzhou", "http://127.0.0.1:9", "nope",
                                  "--name", "福州市节点", "--division", "350100",
                                  "--relation", "child"])  # fmt: skip
    assert refused.exit_code == 1 and "public key" in refused.output
    added = runner.invoke(app, ["nodes", "add", "fuzhou", "http://127.0.0.1:9", KEY,
                                "--name", "福州市节点", "--division", "350100",
                                "--relation", "child"])  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = json.loads(runner.invoke(app, ["nodes", "list", "--json"]).output)
    assert [(n["node_id"], n["status"], n["public_key"]) for n in listed] == [
        ("fuzhou", "active", KEY)
    ]
    # No parent: nothing to publish to.
    published = runner.invoke(app, ["nodes", "publish"])
    assert published.exit_code == 0 and "no parent node" in published.output
    # A parent that does not answer: the publication fails and says why.
    runner.invoke(app, ["nodes", "add", "province", "http://127.0.0.1:9", KEY, "--name",
                        "福建省节点", "--division", "350000", "--relation", "parent"])  # fmt: skip
    failed = runner.invoke(app, ["nodes", "publish"])
    assert failed.exit_code == 1 and "did not answer" in failed.output
    revoked = runner.invoke(app, ["nodes", "revoke", "fuzhou", "--reason", "撤网"])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(app, ["nodes", "revoke", "fuzhou", "--reason", "撤网"])
    assert again.exit_code == 1 and "already revoked" in again.output


def test_the_publish_job_signs_as_the_node_that_runs_it(var: Path) -> None:
    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    try:
        with node.factory.begin() as s:
            job_id = submit_publish(s, Principal.system(), "fujian-province").id
        jobs.run(node.factory, job_id)
        with node.factory() as s:
            job = s.get(jobs.Job, job_id)
            assert job is not None and job.state == jobs.JobState.SUCCEEDED, job and job.error
            assert job.result == {"sent": {}}
    finally:
        node.close()
