"""E-licence API: issuers' DID documents and status lists, verification, holders, departments.

The DID documents and status list credentials are public and cacheable: verifiers anywhere
resolve `did:web:<node>:licences:issuers:<org>` to `/licences/issuers/<org>/did.json` and
fetch `/licences/status/<org>/<purpose>` (`application/vc+jwt`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from minyun.core import jobs
from minyun.licences import credentials as vc
from minyun.licences import service
from minyun.licences.models import IssuerKey, Licence
from minyun.web.deps import ActorDep, SessionDep

router = APIRouter(tags=["licences"])
OrgCode = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
LicenceId = Annotated[str, Path(max_length=40)]


class UseRead(BaseModel):
    at: datetime
    kind: str
    actor: str
    purpose: str | None
    department: str | None


class LicenceRead(BaseModel):
    id: str
    type: str
    type_name: str
    issuer: str
    holder_id: str
    holder_name: str | None
    number: str
    status: str
    valid_from: datetime
    valid_until: datetime | None
    issued_at: datetime
    data: dict[str, Any]
    credential: str | None = None
    uses: list[UseRead] | None = None

    @classmethod
    def of(cls, licence: Licence, *, credential: bool = False) -> LicenceRead:
        return cls(
            id=licence.id, type=licence.type.code, type_name=licence.type.name,
            issuer=licence.type.issuer.code, holder_id=licence.holder_id,
            holder_name=licence.holder_name, number=licence.number,
            status=service.state_of(licence), valid_from=licence.valid_from,
            valid_until=licence.valid_until, issued_at=licence.issued_at, data=licence.data,
            credential=(licence.credential or None) if credential else None,
        )  # fmt: skip


class VerifyIn(BaseModel):
    credential: str = Field(min_length=1, max_length=20_000)


class VerifyOut(BaseModel):
    outcome: Literal["valid", "revoked", "suspended", "expired", "forged", "unknown"]
    reason: str
    credential: dict[str, Any] | None = None


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class TypeRead(BaseModel):
    code: str
    name: str
    issuer: str
    holder_kind: str
    source: str | None
    fields: list[str]


@router.get("/licences/issuers/{org_code}/did.json", include_in_schema=True)
def did_document(org_code: OrgCode, session: SessionDep) -> JSONResponse:
    """The issuing department's DID document (did:web), with its keys as JWKs."""
    document = service.did_document(session, org_code)
    return JSONResponse(
        document, media_type="application/did+json", headers={"Cache-Control": "max-age=300"}
    )


@router.get("/licences/status/{org_code}/{purpose}")
def status_list(
    org_code: OrgCode, purpose: Literal["revocation", "suspension"], session: SessionDep
) -> Response:
    """The issuer's Bitstring Status List credential for `purpose`, as a signed vc+jwt."""
    token = service.status_list_token(session, org_code, purpose)
    ttl = int(vc.STATUS_TTL.total_seconds())
    return Response(token, media_type=vc.MEDIA_TYPE, headers={"Cache-Control": f"max-age={ttl}"})


@router.get("/licences/trust-bundle")
def trust_bundle(session: SessionDep) -> JSONResponse:
    """Every issuer's DID document and signed status lists: an offline counter's download."""
    ttl = int(vc.STATUS_TTL.total_seconds())
    return JSONResponse(service.trust_bundle(session), headers={"Cache-Control": f"max-age={ttl}"})


@router.post("/api/v1/licences/verify", response_model=VerifyOut)
def verify(body: VerifyIn, session: SessionDep, actor: ActorDep) -> VerifyOut:
    """Verify a credential or QR payload: valid, revoked, suspended, expired, forged, unknown."""
    result = service.verify(session, actor, body.credential)
    return VerifyOut(outcome=result.outcome.value, reason=result.reason,
                     credential=result.credential)  # fmt: skip


@router.get("/api/v1/licences/mine", response_model=list[LicenceRead])
def mine(session: SessionDep, actor: ActorDep) -> list[LicenceRead]:
    """The signed-in citizen's or enterprise's licences, with their credentials."""
    return [LicenceRead.of(lic, credential=True) for lic in service.my_licences(session, actor)]


@router.get("/api/v1/licences/{licence_id}", response_model=LicenceRead)
def licence(licence_id: LicenceId, session: SessionDep, actor: ActorDep) -> LicenceRead:
    """One licence, for its holder or its issuer, with who fetched or verified it."""
    found = service.access_licence(session, actor, licence_id)
    read = LicenceRead.of(found, credential=True)
    read.uses = [UseRead(**use.__dict__) for use in service.uses_of(session, found)]
    return read


@router.get("/api/v1/licences/{licence_id}/credential")
def credential(licence_id: LicenceId, session: SessionDep, actor: ActorDep) -> Response:
    """The licence's credential as `application/vc+jwt` (the holder's download)."""
    found = service.access_licence(session, actor, licence_id)
    return Response(
        found.credential,
        media_type=vc.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{found.id}.jwt"'},
    )


@router.post("/api/v1/licences/{licence_id}/{action}", response_model=LicenceRead)
def change(
    licence_id: LicenceId,
    action: Literal["revoke", "suspend", "reinstate"],
    body: ReasonIn,
    session: SessionDep,
    actor: ActorDep,
) -> LicenceRead:
    """Revoke, suspend or reinstate a licence (its issuer's stewards or an admin)."""
    to = {"revoke": "revoked", "suspend": "suspended", "reinstate": "live"}[action]
    found = service.change_status(session, actor, licence_id, to=to, reason=body.reason)
    return LicenceRead.of(found)


@router.get("/api/v1/holders/{holder}/licences", response_model=list[LicenceRead])
def holder_licences(
    holder: Annotated[str, Path(min_length=18, max_length=18)],
    session: SessionDep,
    actor: ActorDep,
    purpose: Annotated[str, Query(min_length=1, max_length=500)],
) -> list[LicenceRead]:
    """A holder's current licences for a department whose grants open their types' resources."""
    found = service.holder_licences(session, actor, holder, purpose=purpose)
    return [LicenceRead.of(lic, credential=whole) for lic, whole in found]


@router.get("/api/v1/licence-types", response_model=list[TypeRead])
def types(session: SessionDep) -> list[TypeRead]:
    """Every licence type and who issues it."""
    return [
        TypeRead(code=t.code, name=t.name, issuer=t.issuer.code, holder_kind=t.holder_kind,
                 source=t.source, fields=[f["name"] for f in t.schema.get("fields", [])])
        for t in service.list_types(session)
    ]  # fmt: skip


class TypeDefine(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    issuer: str = Field(min_length=1, max_length=64)
    holder_kind: Literal["person", "enterprise"]
    schema_: dict[str, Any] = Field(alias="schema")
    source: str | None = Field(default=None, max_length=100)
    holder_field: str = Field(min_length=1, max_length=64)
    holder_name_field: str | None = Field(default=None, max_length=64)
    number_field: str | None = Field(default=None, max_length=64)
    validity: dict[str, Any] = Field(default_factory=dict)
    template: str = Field(default="", max_length=20_000)


@router.put("/api/v1/licence-types/{code}", response_model=TypeRead)
def define_type(
    code: Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")],
    body: TypeDefine,
    session: SessionDep,
    actor: ActorDep,
) -> TypeRead:
    """Define or change a licence type (the issuing department's stewards or an admin)."""
    made = service.define_type(session, actor, service.TypeSpec(
        code=code, name=body.name, issuer=body.issuer, holder_kind=body.holder_kind,
        schema=body.schema_, source=body.source, holder_field=body.holder_field,
        holder_name_field=body.holder_name_field, number_field=body.number_field,
        validity=body.validity, template=body.template,
    ))  # fmt: skip
    return TypeRead(code=made.code, name=made.name, issuer=body.issuer,
                    holder_kind=made.holder_kind, source=made.source,
                    fields=[f["name"] for f in made.schema.get("fields", [])])  # fmt: skip


@router.post("/api/v1/licence-types/{code}/issue", status_code=202)
def issue(
    code: Annotated[str, Path(max_length=64)], session: SessionDep, actor: ActorDep
) -> dict[str, str]:
    """Queue the issuance job of a type (its issuer's stewards or an admin)."""
    job: jobs.Job = service.submit_issuance(session, actor, code)
    return {"job": job.id}


@router.get("/api/v1/licence-statistics")
def statistics(
    session: SessionDep, actor: ActorDep, by: Literal["type", "issuer"] = "type"
) -> list[dict[str, Any]]:
    """Issued, live, revoked and uses per type, or per issuing department (civil servants)."""
    stats = service.statistics(session, actor)
    rows = service.issuer_statistics(stats) if by == "issuer" else stats
    return [s.__dict__ for s in rows]


class KeyRead(BaseModel):
    kid: str
    id: str  # the key's DID URL, as the DID document's verificationMethod names it
    algorithm: Literal["Ed25519", "SM2"]
    status: Literal["active", "rotated", "retired"]
    created_at: datetime
    rotated_at: datetime | None
    retired_at: datetime | None

    @classmethod
    def of(cls, key: IssuerKey) -> KeyRead:
        return cls(
            kid=key.kid, id=str(key.public_jwk.get("kid", key.kid)),
            algorithm=service.algorithm_of(key).value, status=key.status,
            created_at=key.created_at, rotated_at=key.rotated_at, retired_at=key.retired_at,
        )  # fmt: skip


class RotateIn(BaseModel):
    algorithm: Literal["Ed25519", "SM2"] | None = None


Kid = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


@router.get("/api/v1/licence-issuers/{org_code}/keys", response_model=list[KeyRead])
def issuer_keys(org_code: OrgCode, session: SessionDep, actor: ActorDep) -> list[KeyRead]:
    """An issuing department's signing keys, oldest first (its stewards or an admin)."""
    return [KeyRead.of(k) for k in service.issuer_keys(session, actor, org_code)]


@router.post("/api/v1/licence-issuers/{org_code}/keys", response_model=KeyRead, status_code=201)
def rotate_key(org_code: OrgCode, body: RotateIn, session: SessionDep, actor: ActorDep) -> KeyRead:
    """Rotate: a new signing key (by default of the kind the issuer has); the old one's
    licences keep verifying."""
    return KeyRead.of(service.rotate_key(session, actor, org_code, algorithm=body.algorithm))


@router.post("/api/v1/licence-issuers/{org_code}/keys/{kid}/retire", response_model=KeyRead)
def retire_key(
    org_code: OrgCode, kid: Kid, body: ReasonIn, session: SessionDep, actor: ActorDep
) -> KeyRead:
    """Withdraw a compromised key: what it signed is refused from now on."""
    return KeyRead.of(service.retire_key(session, actor, org_code, kid, reason=body.reason))
