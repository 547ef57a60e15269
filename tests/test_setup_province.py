"""README "Set up a real province", run as written on a fresh node without the demo.

init → organisation → steward → API client → resource → load, all on the command line; then
the node serves the API and a token of that client reads its own organisation's rows. Every
command run here is checked to appear in the README, so the README cannot drift from it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from minyun.accounts.models import User
from minyun.cli import app
from minyun.core.audit import AuditRecord
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.orgs.models import Organization
from minyun.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = "docs/examples/province"
runner = CliRunner()

STEPS: list[list[str]] = [
    ["init"],
    ["org", "create", "fz-data", "--name", "福州市数据管理局", "--division", "350100",
     "--uscc", "11350100MB1957824H"],
    ["user", "create", "lin.steward", "--org", "fz-data", "--role", "steward",
     "--name", "林数据专员"],
    ["client", "create", "福州市企业服务平台", "--org", "fz-data", "--scope", "resource.read",
     "--json"],
    ["resource", "create", "fz-enterprises", "--name", "福州市企业登记信息", "--provider",
     "fz-data", "--schema", f"{EXAMPLES}/fz-enterprises.schema.json", "--sharing",
     "unconditional", "--open", "unconditional", "--theme", "市场监管", "--publish"],
    ["load", "fz-enterprises", f"{EXAMPLES}/fz-enterprises.csv"],
]  # fmt: skip
STEWARD_PASSWORD = "a long enough password"


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    found = re.search(r"^## Set up a real province\n(.*?)(?=^## )", text, re.S | re.M)
    assert found, "README.md has no section 'Set up a real province'"
    return re.sub(r"\\\n\s*", "", found.group(1))  # join continued shell lines


def test_the_readme_shows_every_step_the_test_runs() -> None:
    section = _readme_section()
    commands = []
    for line in section.splitlines():
        if line.startswith("minyun "):
            words = shlex.split(line, comments=True)[1:]
            commands.append(words[: words.index(">")] if ">" in words else words)
    for args in STEPS:
        assert args in commands, f"README lacks: minyun {' '.join(args)}"
    assert "/api/v1/oauth/token" in section
    assert "/api/v1/resources/fz-enterprises/rows" in section


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A node's var folder that does not exist yet; the commands run from the repository root."""
    var = tmp_path / "var"
    monkeypatch.setenv("MINYUN_VAR_DIR", str(var))
    for name in ("MINYUN_DATABASE_URL", "MINYUN_JOBS_MODE", "MINYUN_LAKE_URI", "MINYUN_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ROOT)
    return var


def test_a_real_province_is_set_up_without_the_demo(fresh: Path) -> None:
    outputs = []
    for args in STEPS:
        extra = ["--password-stdin"] if args[:2] == ["user", "create"] else []
        stdin = STEWARD_PASSWORD + "\n" if extra else None
        result = runner.invoke(app, args + extra, input=stdin)
        assert result.exit_code == 0, (args, result.output)
        outputs.append(result.stdout)
    client = json.loads(outputs[3])
    assert "5 rows accepted, 0 rejected" in outputs[5]

    node = Platform.open(load_settings())
    try:
        with node.factory() as s:
            # Nothing of the demo: one organisation, one account.
            assert s.scalar(select(func.count()).select_from(Organization)) == 1
            assert list(s.scalars(select(User.username))) == ["lin.steward"]
            actions = set(s.scalars(select(AuditRecord.action)))
        assert {"org.create", "user.create", "client.create", "resource.create"} <= actions
        with TestClient(create_app(node)) as http:
            token = http.post(
                "/api/v1/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client["client_id"], client["client_secret"]),
            )
            assert token.status_code == 200, token.text
            bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
            rows = http.get("/api/v1/resources/fz-enterprises/rows", headers=bearer)
            assert rows.status_code == 200, rows.text
            names = [r["name"] for r in rows.json()["rows"]]
            assert len(names) == 5 and "福州榕城茶业有限公司" in names
            key = "/api/v1/resources/fz-enterprises/rows/91350103H3BJ1XG69W"
            for _ in range(2):  # the second answer comes from the cached token and plan
                one = http.get(key, headers=bearer)
                assert one.status_code == 200 and one.json()["row"]["legal_person"] == "林秀英"

            # The steward signs in on the web with the password given on the command line.
            page = http.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf
            signed_in = http.post(
                "/login",
                data={"username": "lin.steward", "password": STEWARD_PASSWORD, "csrf": csrf[1]},
                follow_redirects=False,
            )
            assert signed_in.status_code == 303

            # Revoked on the command line: the same token is refused at once, cached or not.
            revoked = runner.invoke(app, ["client", "revoke", client["client_id"]])
            assert revoked.exit_code == 0, revoked.output
            assert http.get(key, headers=bearer).status_code == 401
            assert (
                http.get("/api/v1/resources/fz-enterprises/rows", headers=bearer).status_code == 401
            )
    finally:
        node.close()
