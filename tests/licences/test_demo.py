"""The demo's licence types: 20+ real-world kinds, and wallets for the demo accounts."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from minyun.accounts.models import User
from minyun.catalog import service as catalog
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.tableschema import parse_schema
from minyun.core.uow import unit_of_work
from minyun.demo import province
from minyun.demo.resources import write_data
from minyun.licences import demo, service
from minyun.licences.models import Licence
from tests.ingest import loadkit

SYSTEM = Principal.system()


def test_the_demo_defines_at_least_twenty_kinds_of_its_departments_resources() -> None:
    assert len(demo.TYPES) >= 20
    assert len({t.code for t in demo.TYPES}) == len(demo.TYPES)
    for kind in demo.TYPES:
        schema = parse_schema(kind.schema())
        assert set(kind.fields) == set(schema.names), kind.code
        holder = schema.field(kind.holder_field)
        assert holder.format == service.FORMAT_OF[service.HolderKind(kind.holder_kind)]
        assert kind.spec().issuer == kind.resource.provider


def test_the_demo_citizen_and_enterprise_get_licences(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    with unit_of_work(node.factory) as session:
        province.load_departments(session)
        province.load_accounts(session, node.settings.var_dir)
    sources = (
        "police-population-basic",
        "amr-enterprise-registration",
    )
    for kind in demo.TYPES:
        if kind.source not in sources:
            continue
        resource = kind.resource
        with unit_of_work(node.factory) as session:
            catalog.create_resource(
                session, SYSTEM, code=resource.code, name=resource.name,
                provider=resource.provider, summary=resource.summary, theme=resource.theme,
                sharing_type=resource.sharing, open_type=resource.open,
                legal_basis=resource.legal_basis, schema=resource.schema(),
            )  # fmt: skip
            catalog.publish_resource(session, SYSTEM, resource.code)
        loadkit.load(node, SYSTEM, resource.code, write_data(resource, tmp_path / "data"))
    result = demo.load(node.factory, node.lake, tmp_path / "licences", node.settings)
    assert result["licence_types"] == 2
    with node.factory() as session:
        users = {u.username: u for u in session.scalars(select(User))}
        held = {
            holder: sorted(lic.type.code for lic in session.scalars(
                select(Licence).where(Licence.holder_id == holder, Licence.status == "live")))
            for holder in (users["citizen"].ric, users["enterprise"].uscc)
        }  # fmt: skip
    assert held[users["citizen"].ric] == ["resident-id"]
    assert held[users["enterprise"].uscc] == ["business-licence"]
