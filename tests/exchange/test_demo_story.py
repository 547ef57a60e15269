"""The demo story: market regulation registers, changes and deregisters enterprises; tax and
social security (webhooks, one of them down for a while) and statistics (reading the log by
offset) keep copies that end in step with the register; the auditor sees every change in the
audit viewer, and `minyun audit verify` finds the chain intact."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from minyun.accounts.service import principal_for
from minyun.core import identifiers
from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.core.uow import unit_of_work
from minyun.demo import market, province
from minyun.orgs import service as orgs
from minyun.push import service as push
from minyun.push import webhooks
from minyun.push.webhooks import Backoff, Verifier
from minyun.web.app import create_app
from tests import factories
from tests.conftest import PostgresDatabases, make_settings
from tests.push.receiver import Receiver
from tests.query.test_query_api import signed_in

KINDS = ["enterprise.registered", "enterprise.changed", "enterprise.deregistered"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    """A node running its jobs in its own threads, allowing local webhook URLs."""
    overrides: dict[str, object] = {"webhooks_allow_private": True}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    monkeypatch.setattr(webhooks, "BACKOFF", Backoff(base=0.05, cap=0.2))
    node = Platform.open(make_settings(tmp_path / "var", **overrides))
    node.migrate()
    monkeypatch.setenv("MINYUN_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MINYUN_DATABASE_URL", str(overrides.get("database_url", "")))
    yield node
    node.close()


def _until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _uscc(n: int) -> str:
    return identifiers.make_uscc("9", "1", "350100", f"MA{n:06d}")


def test_departments_copies_stay_in_step_with_the_register(live: Platform) -> None:
    http = TestClient(create_app(live))
    with live.factory.begin() as s:
        province.load_departments(s)
        ids = {
            c: orgs.get_organization(s, c).id for c in ("fj-amr", "fj-tax", "fj-hrss", "fj-stats")
        }
        registrar = principal_for(
            factories.make_user(s, roles=[Role.STEWARD], organization_id=ids["fj-amr"])
        )
        tax_user = principal_for(
            factories.make_user(s, roles=[Role.CONSUMER], organization_id=ids["fj-tax"])
        )
    # Tax and social security take webhooks; social security's receiver is down at first.
    receivers = {"fj-tax": Receiver(), "fj-hrss": Receiver()}
    copies = {code: market.EnterpriseCopy(code) for code in (*receivers, "fj-stats")}
    for code, receiver in receivers.items():
        with unit_of_work(live.factory) as s:
            owner = push.organization_reader(ids[code], code)
            sub = push.subscribe(s, owner, url=receiver.url, kinds=KINDS, allow_private=True,
                                 max_attempts=20)  # fmt: skip
        receiver.verifier = Verifier(sub.secret)
    receivers["fj-tax"].start()
    # Statistics reads the log by offset with its API client.
    _, stats = factories.api_client_token(http, live, ids["fj-stats"], ["events.read"])

    def change(fn: Callable[..., object], *args: object, **kw: object) -> None:
        with unit_of_work(live.factory) as s:
            fn(s, registrar, *args, **kw)

    for n in range(6):
        change(market.register_enterprise, uscc=_uscc(n), name=f"福州闽云示范{n}有限公司",
               legal_person=f"法人{n}", address="福州市鼓楼区", capital=100 * (n + 1))  # fmt: skip
    change(market.change_enterprise, _uscc(1), {"name": "福州闽云更名有限公司"})
    change(market.change_enterprise, _uscc(2), {"address": "厦门市思明区", "capital": 900})
    change(market.deregister_enterprise, _uscc(3), reason="决议解散")
    # Only the market regulation bureaus keep the register: refused, audited, nothing sent.
    with pytest.raises(Forbidden), unit_of_work(live.factory) as s:
        market.register_enterprise(s, tax_user, uscc=_uscc(9), name="x", legal_person="y")
    time.sleep(0.3)
    receivers["fj-hrss"].start()  # social security comes back

    after = 0
    while after < 9:
        page = http.get("/api/v1/events", params={"after": after}, headers=stats).json()
        copies["fj-stats"].apply_all(page["events"])
        after = page["next_after"]
    for code, receiver in receivers.items():
        _until(lambda r=receiver: len(r.received) >= 9)  # type: ignore[misc]
        copies[code].apply_all(receiver.received)
        assert receiver.offsets() == list(range(1, 10)), code  # once each, in order
        assert receiver.rejected == []
    with live.factory() as s:
        register = market.register_snapshot(s)
    assert register[_uscc(3)]["status"] == "deregistered"
    assert register[_uscc(1)]["name"] == "福州闽云更名有限公司"
    for code, copy in copies.items():
        assert copy.rows == register, code
    # A redelivery changes nothing.
    tax = copies["fj-tax"]
    tax.apply_all(receivers["fj-tax"].received)
    assert tax.rows == register and tax.skipped == 9
    for receiver in receivers.values():
        receiver.stop()

    # The auditor sees every change, and the refusal, in the audit viewer.
    auditor = signed_in(create_app(live), live, [Role.AUDITOR], ids["fj-stats"])
    viewer = auditor.get("/audit", params={"action": "market.register"})
    assert viewer.status_code == 200
    assert all(_uscc(n) in viewer.text for n in range(6))
    assert "企业设立登记" in viewer.text
    with live.factory() as s:
        refused = s.scalars(
            select(AuditRecord).where(
                AuditRecord.action == "market.register", AuditRecord.outcome == "denied"
            )
        ).all()
    assert [r.actor for r in refused] == [tax_user.label]
    for action in ("market.change", "market.deregister"):
        assert (
            _uscc(3 if action == "market.deregister" else 1)
            in auditor.get("/audit", params={"action": action}).text
        )
    live.audit_appender.close()
    from minyun.cli import app

    verified = CliRunner().invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "audit chain intact" in verified.output


def test_bad_register_changes_are_refused_and_change_nothing(live: Platform) -> None:
    with live.factory.begin() as s:
        province.load_departments(s)
        amr = orgs.get_organization(s, "fj-amr").id
    registrar = Principal(kind="user", name="amr", organization_id=amr,
                          roles=frozenset({Role.STEWARD}), account_kind="staff")  # fmt: skip
    with unit_of_work(live.factory) as s:
        market.register_enterprise(s, registrar, uscc=_uscc(1), name="甲", legal_person="乙")
    bad: list[tuple[Callable[..., object], tuple[object, ...], dict[str, object]]] = [
        (market.register_enterprise, (), {"uscc": "91350100MA0000000X", "name": "a",
                                         "legal_person": "b"}),
        (market.register_enterprise, (), {"uscc": _uscc(1), "name": "a", "legal_person": "b"}),
        (market.change_enterprise, (_uscc(1), {"uscc": "x"}), {}),
        (market.change_enterprise, (_uscc(1), {"name": "甲"}), {}),
        (market.change_enterprise, (_uscc(2), {"name": "丙"}), {}),
        (market.deregister_enterprise, (_uscc(1),), {"reason": " "}),
    ]  # fmt: skip
    for fn, args, kw in bad:
        with pytest.raises(Exception) as caught, unit_of_work(live.factory) as s:
            fn(s, registrar, *args, **kw)
        assert caught.type.__name__ in ("Invalid", "Conflict", "NotFound"), fn
    with live.factory() as s:
        from minyun.core import events

        assert events.head(s) == 1  # only the one registration
        assert market.register_snapshot(s)[_uscc(1)]["version"] == 1
