"""The demo's sharing story: the demo consumer (social security) holds a grant on the police's
population register with one field fewer than asked, once however often the demo loads."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from minyun.catalog import service as catalog
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.demo import province, sharing
from minyun.demo.resources import RESOURCES
from minyun.exchange.models import Application, Grant


def test_the_demo_consumer_holds_a_grant_with_one_field_fewer(
    platform: Platform, tmp_path: Path
) -> None:
    police = next(r for r in RESOURCES if r.code == sharing.RESOURCE)
    with platform.factory.begin() as s:
        province.load_departments(s)
        province.load_accounts(s, tmp_path)
        assert sharing.demo_sharing(s) == {"granted": 0}  # no resource yet: nothing
        catalog.create_resource(
            s, Principal.system(), code=police.code, name=police.name, provider=police.provider,
            summary=police.summary, theme=police.theme, sharing_type=police.sharing,
            open_type=police.open, legal_basis=police.legal_basis, schema=police.schema(),
        )  # fmt: skip
        catalog.publish_resource(s, Principal.system(), police.code)
        made = sharing.demo_sharing(s)
        again = sharing.demo_sharing(s)
    assert made["granted"] == 1 and again == {"granted": 0}
    with platform.factory() as s:
        grant = s.scalars(select(Grant)).one()
        application = s.scalars(select(Application)).one()
    assert application.fields == sharing.ASKED and grant.fields == sharing.GIVEN
    assert grant.consumer.code == "fj-hrss" and grant.rate_limit == 600
