"""E-licence issuance in step with 100,000 registration changes, against plain signing.

Setup: an embedded node (SQLite, a local lake) in a temporary folder, a market regulator,
its business registration resource (credit code, name, legal person, date, status) and
the 营业执照 type over it (a row whose status is 注销 is deregistered).

Changes, MINYUN_BENCH_LICENCE_CHANGES in all (default 100,000), as the department's loads
make them: half the rows created by a first full load; then one upsert load changing a
fifth of the total (new names), creating a tenth and deregistering a tenth (status 注销);
then a delete load removing a tenth. After each load the issuance job (`licences.issue`)
follows the lake's Change Data Feed; the time of the three issuance runs gives
`licences.issue_per_s` (changes followed per second, each a signed vc+jwt credential, a
status list entry, the audit records and the control-plane rows).

Checks: `licences.duplicates` (source rows with more than one live licence) and
`licences.orphans` (live licences whose row is gone or deregistered, plus live rows
without a licence) must both be 0. `licences.rerun_changes` is what a second run of the
job changed (0: idempotent).

Baseline, measured in the same run: `licences.sign_plain_per_s`, signing as many
credentials of the same size with joserfc alone (no lake, no database), and
`licences.issue_vs_sign_ratio`, the share of that speed issuance keeps.

SM2 (an issuer of a national-standard deployment): `licences.sm2_sign_per_s` and
`licences.sm2_verify_per_s`, signing and verifying the same credential as `SM2SM3` with
minyun's gmssl-based signer, MINYUN_BENCH_SM2_CREDENTIALS of them (default 200): the bound
an SM2 department's issuance and a verifier's checks cannot pass.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import func, select

from minyun.catalog import service as catalog
from minyun.core import identifiers, jobs
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.ingest import service as ingest
from minyun.ingest.models import LoadMode
from minyun.licences import credentials as vc
from minyun.licences import service
from minyun.licences.models import CURRENT, Licence
from minyun.orgs import service as orgs

SYSTEM = Principal.system(on_behalf_of="bench")
SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "uscc", "type": "string", "format": "cn-uscc", "title": "统一社会信用代码",
         "constraints": {"required": True}},
        {"name": "name", "type": "string", "title": "企业名称"},
        {"name": "legal_person", "type": "string", "title": "法定代表人"},
        {"name": "established", "type": "date", "title": "成立日期"},
        {"name": "status", "type": "string", "title": "登记状态"},
    ],
    "primaryKey": ["uscc"],
}  # fmt: skip


def _uscc(i: int) -> str:
    return identifiers.make_uscc("9", "1", "350100", f"{i:08d}")


def _rows(ids: range, *, name: str = "有限公司", status: str = "存续") -> pa.Table:
    return pa.table({
        "uscc": [_uscc(i) for i in ids],
        "name": [f"闽云{i}{name}" for i in ids],
        "legal_person": [f"法人{i}" for i in ids],
        "established": ["2020-05-01"] * len(ids),
        "status": [status] * len(ids),
    })  # fmt: skip


def _load(node: Platform, steward: Principal, code: str, table: pa.Table, mode: LoadMode,
          folder: Path) -> None:  # fmt: skip
    path = folder / f"{mode}-{time.monotonic_ns()}.csv"
    pacsv.write_csv(table, path)
    with unit_of_work(node.factory) as session:
        job_id = ingest.submit_load(session, steward, code, str(path), mode=mode,
                                    settings=node.settings).id  # fmt: skip
    done = jobs.run(node.factory, job_id)
    if done.state != jobs.JobState.SUCCEEDED:
        raise RuntimeError(f"load {mode} failed: {done.error}")


def _sign_plain(count: int) -> float:
    signer = vc.Signer(vc.signing_key(b"\x01" * 32), "did:web:example.org#key-1")
    document = {
        "@context": [vc.VC_CONTEXT], "id": "urn:uuid:0", "type": ["VerifiableCredential"],
        "issuer": {"id": "did:web:example.org", "name": "市场监督管理局"},
        "validFrom": "2020-05-01T00:00:00Z",
        "credentialSubject": {"uscc": _uscc(1), "name": "闽云1有限公司", "legal_person": "法人1",
                              "established": "2020-05-01"},
        "credentialStatus": vc.status_entries(
            {p: f"https://example.org/status/{p}" for p in vc.PURPOSES}, 1),
    }  # fmt: skip
    started = time.perf_counter()
    for i in range(count):
        document["id"] = f"urn:uuid:{i}"
        signer.sign(document)
    return count / (time.perf_counter() - started)


def _sm2_plain(count: int) -> tuple[float, float]:
    """Credentials signed and verified per second with an SM2 key (no lake, no database)."""
    key = vc.sm2_signing_key(b"\x01" * 32)
    kid = "did:web:example.org#key-1"
    signer = vc.Signer(key, kid)
    document = {"@context": [vc.VC_CONTEXT], "id": "urn:uuid:0", "issuer": "did:web:example.org",
                "validFrom": "2020-05-01T00:00:00Z", "iat": 0,
                "credentialSubject": {"uscc": _uscc(1), "name": "闽云1有限公司"}}  # fmt: skip
    started = time.perf_counter()
    tokens = [signer.sign({**document, "id": f"urn:uuid:{i}"}) for i in range(count)]
    signing = count / (time.perf_counter() - started)
    verifier = vc.Verifier({kid: vc.TrustedKey(vc.public_jwk(key, kid))})
    started = time.perf_counter()
    outcomes = {verifier.verify(token).outcome for token in tokens}
    verifying = count / (time.perf_counter() - started)
    if outcomes != {vc.Outcome.VALID}:
        raise RuntimeError(f"SM2 credentials did not verify: {outcomes}")
    return signing, verifying


def _check(node: Platform, code: str, type_code: str) -> tuple[int, int]:
    with unit_of_work(node.factory) as session:
        kind = service.get_type(session, type_code)
        duplicates = session.scalar(
            select(func.count()).select_from(
                select(Licence.source_key)
                .where(Licence.type_id == kind.id, Licence.status.in_(CURRENT))
                .group_by(Licence.source_key)
                .having(func.count() > 1)
                .subquery()
            )
        )
        live = set(session.scalars(select(Licence.source_key).where(
            Licence.type_id == kind.id, Licence.status.in_(CURRENT))))  # fmt: skip
        resource = catalog.get_resource(session, code)
        table = node.lake.dataset(code, version=resource.lake_version).to_table()
    expected = {
        u for u, s in zip(table.column("uscc").to_pylist(), table.column("status").to_pylist(),
                          strict=True) if s == "存续"
    }  # fmt: skip
    return int(duplicates or 0), len(live ^ expected)


def run() -> dict[str, float]:
    total = int(os.environ.get("MINYUN_BENCH_LICENCE_CHANGES", "100000"))
    tenth = max(1, total // 10)
    with tempfile.TemporaryDirectory(prefix="minyun-bench-licences-") as tmp:
        folder = Path(tmp)
        node = Platform.open(load_settings(var_dir=folder / "var"), run_jobs_here=False)
        try:
            node.migrate()
            with unit_of_work(node.factory) as session:
                orgs.load_divisions(session, orgs.packaged_divisions())
                org = orgs.create_organization(
                    session, SYSTEM, code="bench-amr", name="市场监督管理局（基准）",
                    uscc=identifiers.make_uscc("1", "1", "350000", "00000001"),
                    division_code="350000",
                )  # fmt: skip
                steward = Principal(kind="user", name="bench-steward", organization_id=org.id,
                                    roles=frozenset({"steward"}))  # fmt: skip
                code = "bench-business-registrations"
                catalog.create_resource(
                    session, SYSTEM, code=code, name="企业登记信息（基准）", provider=org.code,
                    summary="基准测试", theme="market-regulation", sharing_type="conditional",
                    open_type="none", legal_basis="基准测试", schema=SCHEMA,
                )  # fmt: skip
                catalog.publish_resource(session, SYSTEM, code)
                service.define_type(session, SYSTEM, service.TypeSpec(
                    code="bench-business-licence", name="营业执照", issuer=org.code,
                    holder_kind="enterprise",
                    schema={"fields": SCHEMA["fields"][:4], "primaryKey": ["uscc"]},
                    source=code, holder_field="uscc", holder_name_field="name",
                    validity={"valid_from": "established", "revoke_when": {"status": ["注销"]}},
                ))  # fmt: skip
            first = total - 5 * tenth  # created by the first load (half, give or take)
            issue_seconds = 0.0
            tallies: list[dict[str, int]] = []

            def follow() -> None:
                nonlocal issue_seconds
                started = time.perf_counter()
                tallies.append(service.issue(node.factory, node.lake,
                                             "bench-business-licence").as_dict())  # fmt: skip
                issue_seconds += time.perf_counter() - started

            _load(node, steward, code, _rows(range(first)), LoadMode.FULL, folder)
            follow()
            changes = pa.concat_tables([
                _rows(range(0, 2 * tenth), name="（更名）有限公司"),
                _rows(range(first, first + tenth)),
                _rows(range(2 * tenth, 3 * tenth), status="注销"),
            ])  # fmt: skip
            _load(node, steward, code, changes, LoadMode.UPSERT, folder)
            follow()
            _load(node, steward, code, _rows(range(3 * tenth, 4 * tenth)), LoadMode.DELETE,
                  folder)  # fmt: skip
            follow()
            rerun = service.issue(node.factory, node.lake, "bench-business-licence")
            duplicates, orphans = _check(node, code, "bench-business-licence")
            followed = first + 5 * tenth
            issue_per_s = followed / issue_seconds
            plain = _sign_plain(min(followed, 20_000))
            sm2_sign, sm2_verify = _sm2_plain(
                int(os.environ.get("MINYUN_BENCH_SM2_CREDENTIALS", "200"))
            )
            print(json.dumps(tallies, ensure_ascii=False))
        finally:
            node.close()
    return {
        "licences.changes": float(followed),
        "licences.issue_per_s": issue_per_s,
        "licences.sign_plain_per_s": plain,
        "licences.issue_vs_sign_ratio": issue_per_s / plain,
        "licences.sm2_sign_per_s": sm2_sign,
        "licences.sm2_verify_per_s": sm2_verify,
        "licences.duplicates": float(duplicates),
        "licences.orphans": float(orphans),
        "licences.rerun_changes": float(rerun.issued + rerun.reissued + rerun.revoked),
    }
