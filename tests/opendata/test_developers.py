"""Developer keys: ckanapi with a key, the key's limit, revocation, usage from the audit log."""

from __future__ import annotations

import pytest
from ckanapi import CKANAPIError, NotAuthorized, RemoteCKAN
from sqlalchemy import select

from minyun.accounts import service as accounts
from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, Unauthenticated
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.opendata import developers
from tests import factories
from tests.opendata import kit

pytestmark = pytest.mark.browser  # a served app (uvicorn in a thread)


def test_a_key_reads_counts_and_is_refused_when_revoked(platform: Platform, server: str) -> None:
    with platform.factory.begin() as s:
        made = kit.portal(s, platform.lake)
        user = factories.make_user(s, roles=[])
        owner = accounts.principal_for(user)
        _key, raw = developers.create_key(s, owner, name="我的应用", per_minute=4)
        _other, spare = developers.create_key(s, owner, name="另一个")
        with pytest.raises(Unauthenticated):
            developers.create_key(s, Principal.anonymous(), name="x")
    prefix = raw.split(".")[0].removeprefix("odk_")

    ckan = RemoteCKAN(server, apikey=raw)
    rows = ckan.action.datastore_search(resource_id=made.fuzhou, limit=2)
    assert rows["total"] == 10
    ckan.action.datastore_search_sql(sql='SELECT count(*) AS n FROM "ents"')
    assert ckan.action.package_show(id="ents")["name"] == "ents"
    ckan.action.status_show()
    with pytest.raises(CKANAPIError) as caught:  # the fifth call in the minute
        ckan.action.status_show()
    assert "429" in str(caught.value) and "over its limit" in str(caught.value)
    assert RemoteCKAN(server, apikey=spare).action.status_show()["ckan_version"]

    with platform.factory.begin() as s:
        details = s.scalars(select(AuditRecord.detail).where(AuditRecord.actor == owner.label,
                                                             AuditRecord.action == "resource.read")).all()  # fmt: skip
        assert len(details) == 2 and all(f"key={prefix}" in (d or "") for d in details)
        usage = developers.key_usage(s, owner, prefix)
        assert sum(usage.api) == 2 and dict(usage.datasets) == {"ents-fz": 1, "ents": 1}
        developers.revoke_key(s, owner, prefix)
        with pytest.raises(Conflict):
            developers.revoke_key(s, owner, prefix)
    with pytest.raises(NotAuthorized):
        RemoteCKAN(server, apikey=raw).action.package_list()
    with pytest.raises(NotAuthorized):
        RemoteCKAN(server, apikey="odk_000000000000.forgedforgedforgedforged").action.package_list()
    with platform.factory() as s:
        refusals = s.scalars(
            select(AuditRecord.detail).where(AuditRecord.action == "auth.key-use")
        ).all()
    assert any("revoked" in (d or "") for d in refusals)
