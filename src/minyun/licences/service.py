"""E-licences (电子证照): types, issuance in step with department data, credentials, use.

A licence type names an issuing department, the resource whose rows are its licences, the
licence's fields (a Table Schema over that resource's columns), validity rules and a
rendered view. The `licences.issue` job follows the resource's lake versions through
`Lake.follow_changes` (the Change Data Feed, or the whole table when the feed does not cover
them), read with the issuer's access plan: a new or changed row issues or re-issues its
licence, a deleted row or one the type's `revoke_when` rule names revokes it. Re-running a
job changes nothing (a row's licence is re-issued only when its digest changed), and the
database refuses a second live licence for one source row.

Every licence is a W3C Verifiable Credential 2.0 secured as `vc+jwt` (`credentials`),
signed by its issuing department's key, with entries in the department's revocation and
suspension status lists.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minyun.accounts.models import AccountKind, User
from minyun.catalog import service as catalog
from minyun.core import audit, clock, events, jobs, policies
from minyun.core.config import Settings, get_settings
from minyun.core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.keys import NodeKey
from minyun.core.lake import Lake
from minyun.core.reading import reader_secret
from minyun.core.security import Principal, authorize
from minyun.core.tableschema import parse_schema
from minyun.licences import credentials as vc
from minyun.licences.models import (
    CURRENT,
    HolderKind,
    IssuerKey,
    KeyStatus,
    Licence,
    LicenceStatus,
    LicenceType,
    LicenceUse,
    StatusList,
)
from minyun.orgs import service as orgs
from minyun.orgs.models import Organization

KIND = "licences.issue"
BATCH = 2_000  # source rows per transaction of the issuance job
PURPOSE = "licence issuance"
FORMAT_OF = {HolderKind.PERSON: "cn-ric", HolderKind.ENTERPRISE: "cn-uscc"}
_templates = SandboxedEnvironment(autoescape=True)


# --- settings and keys -------------------------------------------------------------------


def settings_of(session: Session) -> Settings:
    """The node's settings the session was opened with (the configured ones otherwise)."""
    found = session.info.get("settings")
    return found if isinstance(found, Settings) else get_settings()


def _node_key(session: Session) -> NodeKey:
    key = session.info.get("node_key")
    if not isinstance(key, NodeKey):
        raise Conflict("no node key to sign licences with")
    return key


def did_of(session: Session, org: Organization) -> str:
    return vc.issuer_did(settings_of(session).base_url, org.code)


def list_url(session: Session, org: Organization, purpose: str) -> str:
    """The stable URL of an issuer's status list credential."""
    return f"{settings_of(session).base_url}/licences/status/{org.code}/{purpose}"


def _seed(session: Session, org_id: int, generation: int, algorithm: vc.KeyAlgorithm) -> bytes:
    # One derivation label per algorithm: a key of one kind never shares a secret with another.
    label = "licence-issuer" if algorithm is vc.KeyAlgorithm.ED25519 else "licence-issuer-sm2"
    return _node_key(session).derive(f"{label}:{org_id}:{generation}")


def _private(seed: bytes, algorithm: vc.KeyAlgorithm) -> Any:
    if algorithm is vc.KeyAlgorithm.SM2:
        return vc.sm2_signing_key(seed)
    return vc.signing_key(seed)


def algorithm_of(key: IssuerKey) -> vc.KeyAlgorithm:
    """What an issuer key signs with, read from its public JWK."""
    found = vc.key_algorithm(key.public_jwk)
    if found is None:
        raise Conflict(f"issuer key {key.kid} is of no known kind")
    return found


def _algorithm(value: str) -> vc.KeyAlgorithm:
    try:
        return vc.KeyAlgorithm(value)
    except ValueError:
        raise Invalid(
            f"a key signs with Ed25519 or SM2, not {value!r}", field="algorithm"
        ) from None


def _active_key(
    session: Session, org: Organization, algorithm: vc.KeyAlgorithm | None = None
) -> IssuerKey:
    """The issuer's signing key, made on first use: of `algorithm`, else of the kind of its
    latest key, else of the node's `licence_key_algorithm`."""
    key = session.scalars(
        select(IssuerKey).where(
            IssuerKey.organization_id == org.id, IssuerKey.status == KeyStatus.ACTIVE
        )
    ).first()
    if key is not None:
        return key
    latest = session.scalars(
        select(IssuerKey)
        .where(IssuerKey.organization_id == org.id)
        .order_by(IssuerKey.generation.desc())
    ).first()
    generation = 1 + (latest.generation if latest is not None else 0)
    kind = algorithm or (
        algorithm_of(latest)
        if latest is not None
        else _algorithm(settings_of(session).licence_key_algorithm)
    )
    fragment = f"key-{generation}"
    private = _private(_seed(session, org.id, generation, kind), kind)
    jwk = vc.public_jwk(private, f"{did_of(session, org)}#{fragment}")
    try:
        with session.begin_nested():
            session.add(IssuerKey(organization_id=org.id, generation=generation, kid=fragment,
                                  public_jwk=jwk))  # fmt: skip
    except IntegrityError:
        pass  # made at the same moment by another issuance: use that one
    return session.scalars(
        select(IssuerKey).where(
            IssuerKey.organization_id == org.id, IssuerKey.status == KeyStatus.ACTIVE
        )
    ).one()


@lru_cache(maxsize=64)
def _signer(seed: bytes, kid: str, algorithm: vc.KeyAlgorithm) -> vc.Signer:
    return vc.Signer(_private(seed, algorithm), kid)


def signer_for(session: Session, org: Organization) -> vc.Signer:
    key = _active_key(session, org)
    kind = algorithm_of(key)
    seed = _seed(session, org.id, key.generation, kind)
    return _signer(seed, f"{did_of(session, org)}#{key.kid}", kind)


def rotate_key(
    session: Session, actor: Principal, org_code: str, *, algorithm: str | None = None
) -> IssuerKey:
    """A new signing key for the issuer, of `algorithm` (Ed25519 or SM2; by default the kind
    it has): the old one stops signing, what it signed verifies. An issuer without a key gets
    its first one."""
    org = _managed_org(session, actor, org_code)
    kind = _algorithm(algorithm) if algorithm is not None else None
    old = session.scalars(
        select(IssuerKey).where(
            IssuerKey.organization_id == org.id, IssuerKey.status == KeyStatus.ACTIVE
        )
    ).first()
    if old is not None:
        old.status = KeyStatus.ROTATED
        old.rotated_at = clock.now()
        session.flush()
    new = _active_key(session, org, kind)
    audit.record(session, actor, "licence.key.rotate", target=org.code, target_type="organization",
                 detail=json.dumps({"from": old.kid if old else None, "to": new.kid,
                                    "algorithm": algorithm_of(new)}))  # fmt: skip
    return new


def issuer_keys(session: Session, actor: Principal, org_code: str) -> list[IssuerKey]:
    """The issuer's keys, oldest first, with their kind and state (its stewards or an admin)."""
    org = _managed_org(session, actor, org_code)
    return list(
        session.scalars(
            select(IssuerKey)
            .where(IssuerKey.organization_id == org.id)
            .order_by(IssuerKey.generation)
        )
    )


def issuer_key(session: Session, actor: Principal, org_code: str, kid: str) -> IssuerKey:
    """One of the issuer's keys by its id (key-<n>); its stewards or an admin."""
    org = _managed_org(session, actor, org_code)
    key = session.scalars(
        select(IssuerKey).where(IssuerKey.organization_id == org.id, IssuerKey.kid == kid)
    ).first()
    if key is None:
        raise NotFound(f"no key {kid} of {org_code}")
    return key


def retire_key(
    session: Session, actor: Principal, org_code: str, kid: str, *, reason: str
) -> IssuerKey:
    """Withdraw a key (compromised): every credential it signed is refused from now on. The
    key that signs now is first rotated (to one of its kind); a retired key stays retired."""
    key = issuer_key(session, actor, org_code, kid)
    org = _managed_org(session, actor, org_code)
    if not reason.strip():
        raise Invalid("give a reason", field="reason")
    if key.status == KeyStatus.RETIRED:
        raise Conflict(f"key {kid} is already retired")
    if key.status == KeyStatus.ACTIVE:
        rotate_key(session, actor, org_code)
    key.status = KeyStatus.RETIRED
    key.retired_at = clock.now()
    audit.record(session, actor, "licence.key.retire", target=org.code, target_type="organization",
                 detail=json.dumps({"kid": kid, "reason": reason}, ensure_ascii=False))  # fmt: skip
    return key


def issuer_of(session: Session, org_code: str) -> Organization:
    """The issuing department by its code (NotFound for none)."""
    return orgs.get_organization(session, org_code)


def next_algorithm(session: Session, keys: Sequence[IssuerKey]) -> vc.KeyAlgorithm:
    """The kind a rotation gives by default: the issuer's newest key's, else the node's."""
    if keys:
        return algorithm_of(max(keys, key=lambda k: k.generation))
    return _algorithm(settings_of(session).licence_key_algorithm)


def managed_issuers(session: Session, actor: Principal) -> list[Organization]:
    """The issuing departments (with a licence type or a key) whose keys the actor manages."""
    issuing = select(LicenceType.issuer_id).union(select(IssuerKey.organization_id))
    found = session.scalars(
        select(Organization).where(Organization.id.in_(issuing)).order_by(Organization.code)
    )
    return [org for org in found if policies.manages(actor, org.id)]


def did_document(session: Session, org_code: str) -> dict[str, Any]:
    """The issuer's DID document: every key not retired, so rotated keys keep verifying."""
    org = orgs.get_organization(session, org_code)
    keys = session.scalars(
        select(IssuerKey)
        .where(IssuerKey.organization_id == org.id, IssuerKey.status != KeyStatus.RETIRED)
        .order_by(IssuerKey.generation)
    ).all()
    if not keys:
        raise NotFound(f"{org_code} issues no licences")
    return vc.did_document(did_of(session, org), [(k.kid, k.public_jwk) for k in keys])


def _refused(
    actor: Principal, action: str, reason: str, *, target: str | None = None
) -> DomainError:
    """Forbidden (Unauthenticated for an anonymous visitor) carrying its audit entry."""
    error: DomainError = Forbidden(reason) if actor.authenticated else Unauthenticated(reason)
    error.audit = audit.Pending(actor=actor, action=action, target=target, outcome=audit.Outcome.DENIED,
                                detail=reason)  # fmt: skip
    return error


def _managed_org(session: Session, actor: Principal, org_code: str) -> Organization:
    org = orgs.get_organization(session, org_code)
    if not policies.manages(actor, org.id):
        raise _refused(actor, "licence.manage", f"only {org_code}'s stewards manage its licences",
                       target=org_code)  # fmt: skip
    return org


# --- status lists ------------------------------------------------------------------------


def _status_list(session: Session, org_id: int, purpose: str, *, lock: bool = False) -> StatusList:
    query = select(StatusList).where(
        StatusList.organization_id == org_id, StatusList.purpose == purpose
    )
    found = session.scalars(query.with_for_update() if lock else query).first()
    if found is None:
        # Two issuances of one issuer may both make its list: the second takes the first's.
        try:
            with session.begin_nested():
                session.add(
                    StatusList(organization_id=org_id, purpose=purpose, bits=vc.empty_bits())
                )
        except IntegrityError:
            pass
        found = session.scalars(query.with_for_update() if lock else query).one()
    return found


def _allocate(session: Session, org_id: int, count: int) -> int:
    """The first of `count` new status list indexes of the issuer (both lists share them)."""
    lists = [_status_list(session, org_id, p, lock=True) for p in vc.PURPOSES]
    first = lists[0].next_index
    for item in lists:
        item.next_index = first + count
        needed = (first + count + 7) // 8
        if needed > len(item.bits):
            item.bits = item.bits + bytes(max(needed, 2 * len(item.bits)) - len(item.bits))
    return first


def _set_status(session: Session, org_id: int, purpose: str, index: int, value: bool) -> None:
    item = _status_list(session, org_id, purpose, lock=True)
    item.bits = vc.set_bit(item.bits, index, value)
    item.updated_at = clock.now()


def status_list_token(session: Session, org_code: str, purpose: str) -> str:
    """The issuer's status list credential (`vc+jwt`) for `purpose`, signed now."""
    if purpose not in vc.PURPOSES:
        raise NotFound(f"no {purpose} status list")
    org = orgs.get_organization(session, org_code)
    item = session.scalars(
        select(StatusList).where(
            StatusList.organization_id == org.id, StatusList.purpose == purpose
        )
    ).first()
    if item is None:
        raise NotFound(f"{org_code} has no {purpose} status list")
    return _list_token(session, org, purpose, item.bits, item.updated_at)


_list_tokens: dict[tuple[str, str, str], tuple[datetime, str]] = {}


def _list_token(
    session: Session, org: Organization, purpose: str, bits: bytes, updated: datetime
) -> str:
    # Signed once per change and cache lifetime: a busy verifier does not make us sign each time.
    url = list_url(session, org, purpose)
    signer = signer_for(session, org)
    cache_key = (url, signer.kid, updated.isoformat())
    now = clock.now()
    cached = _list_tokens.get(cache_key)
    if cached is not None and cached[0] > now:
        return cached[1]
    document = vc.status_list_credential(url, did_of(session, org), purpose, bits, now=now)
    token = signer.sign(document)
    if len(_list_tokens) > 256:
        _list_tokens.clear()
    _list_tokens[cache_key] = (now + vc.STATUS_TTL, token)
    return token


# --- licence types -----------------------------------------------------------------------


@dataclass(frozen=True)
class TypeSpec:
    """What an issuing department says of a licence type."""

    code: str
    name: str
    issuer: str  # organisation code
    holder_kind: str
    schema: Mapping[str, Any]
    source: str | None
    holder_field: str
    holder_name_field: str | None = None
    number_field: str | None = None
    validity: Mapping[str, Any] | None = None
    template: str = ""


def define_type(session: Session, actor: Principal, spec: TypeSpec) -> LicenceType:
    """Create or change a licence type; the issuer's stewards (or an admin) only."""
    org = _managed_org(session, actor, spec.issuer)
    if spec.holder_kind not in tuple(HolderKind):
        raise Invalid(f"holder kind must be person or enterprise, not {spec.holder_kind!r}",
                      field="holder_kind")  # fmt: skip
    schema = parse_schema(spec.schema)
    names = set(schema.names)
    holder = schema.field(spec.holder_field)
    if holder.format != FORMAT_OF[HolderKind(spec.holder_kind)]:
        raise Invalid(f"the holder field of a {spec.holder_kind} licence must have format "
                      f"{FORMAT_OF[HolderKind(spec.holder_kind)]}", field="holder_field")  # fmt: skip
    for name in (spec.holder_name_field, spec.number_field):
        if name is not None and name not in names:
            raise Invalid(f"the schema has no field {name!r}", field=name)
    columns = _check_source(session, org, spec.source, schema.names) if spec.source else set()
    validity = _check_validity(dict(spec.validity or {}), names, columns)
    try:
        _templates.from_string(spec.template)
    except TemplateError as exc:
        raise Invalid(f"the template does not compile: {exc}", field="template") from exc
    found = session.scalars(select(LicenceType).where(LicenceType.code == spec.code)).first()
    if found is not None and found.issuer_id != org.id:
        raise Conflict(f"licence type {spec.code} belongs to another issuer")
    row = found or LicenceType(code=spec.code, issuer_id=org.id)
    row.name, row.holder_kind, row.schema = spec.name, spec.holder_kind, dict(spec.schema)
    row.source, row.holder_field = spec.source, spec.holder_field
    row.holder_name_field, row.number_field = spec.holder_name_field, spec.number_field
    row.validity, row.template = validity, spec.template
    if found is None:
        session.add(row)
    session.flush()
    audit.record(session, actor, "licence.type.define", target=spec.code, target_type="licence-type",
                 detail=json.dumps({"source": spec.source, "fields": schema.names},
                                   ensure_ascii=False))  # fmt: skip
    return row


def _check_validity(validity: dict[str, Any], names: set[str], columns: set[str]) -> dict[str, Any]:
    """Validity from fields of the licence; `revoke_when` on columns of the source."""
    unknown = set(validity) - {"valid_from", "valid_until", "years", "revoke_when"}
    if unknown:
        raise Invalid(f"unknown validity rule {sorted(unknown)[0]!r}", field="validity")
    for key in ("valid_from", "valid_until"):
        if validity.get(key) is not None and (
            not isinstance(validity[key], str) or validity[key] not in names
        ):
            raise Invalid(f"{key} names no field of the schema", field="validity")
    years = validity.get("years")
    if years is not None and (not isinstance(years, int) or not 0 < years <= 100):
        raise Invalid("years must be a whole number from 1 to 100", field="validity")
    revoke = validity.get("revoke_when") or {}
    if not isinstance(revoke, dict) or any(
        k not in columns
        or not isinstance(v, list)
        or not all(isinstance(x, str | int) and not isinstance(x, bool) for x in v)
        for k, v in revoke.items()
    ):
        raise Invalid("revoke_when maps source columns to lists of values", field="validity")
    return validity


def _check_source(session: Session, org: Organization, code: str, fields: list[str]) -> set[str]:
    resource = catalog.get_resource(session, code)
    if resource.provider_id != org.id:
        raise Invalid(f"{code} is not a resource of the issuer {org.code}", field="source")
    columns = catalog.data_resource(session, resource)
    have = {f.name for f in columns.fields}
    missing = [n for n in fields if n not in have]
    if missing:
        raise Invalid(f"{code} has no column {missing[0]!r}", field=missing[0])
    if not columns.primary_key:
        raise Invalid(f"{code} has no primary key to follow its rows by", field="source")
    return have


def get_type(session: Session, code: str) -> LicenceType:
    found = session.scalars(select(LicenceType).where(LicenceType.code == code)).first()
    if found is None:
        raise NotFound(f"no licence type {code}")
    return found


def _locked_type(session: Session, code: str) -> LicenceType:
    found = session.scalars(
        select(LicenceType).where(LicenceType.code == code).with_for_update(of=LicenceType)
    ).first()
    if found is None:
        raise NotFound(f"no licence type {code}")
    return found


def list_types(session: Session) -> list[LicenceType]:
    """Every licence type (public: what kinds of licence exist and who issues them)."""
    return list(session.scalars(select(LicenceType).order_by(LicenceType.code)))


# --- issuance ----------------------------------------------------------------------------


def _on_publish(session: Session, event: events.Event) -> None:
    """A committed load of a source resource queues the issuance of its licence types."""
    if event.kind != "resource.updated" or "jobs" not in session.info:
        return
    codes = session.scalars(select(LicenceType.code).where(LicenceType.source == event.subject))
    for code in codes.all():
        version = (event.data or {}).get("lake_version")
        jobs.submit(session, Principal.system(on_behalf_of="licences"), KIND, {"type": code},
                    key=f"{KIND}:{code}:{version}")  # fmt: skip


events.ON_PUBLISH.append(_on_publish)


def submit_issuance(session: Session, actor: Principal, type_code: str) -> jobs.Job:
    """Queue the issuance job of a type (its issuer's stewards or an admin)."""
    found = get_type(session, type_code)
    if not policies.manages(actor, found.issuer_id):
        raise _refused(actor, "licence.issue", f"only the issuer issues {type_code}",
                       target=type_code)  # fmt: skip
    return jobs.submit(session, actor, KIND, {"type": type_code}, organization_id=found.issuer_id)


@dataclass
class Tally:
    issued: int = 0
    reissued: int = 0
    revoked: int = 0
    unchanged: int = 0
    read: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@jobs.handler(KIND)
def run_issuance(ctx: jobs.JobContext) -> dict[str, Any]:
    """Bring a type's licences in step with its source resource's newest version."""
    info = ctx.factory.kw.get("info") or {}
    settings = info.get("settings") if isinstance(info.get("settings"), Settings) else None
    lake = Lake((settings or get_settings()).lake_uri)
    return issue(ctx.factory, lake, str(ctx.params["type"]), progress=ctx.progress).as_dict()


def issue(factory: Any, lake: Lake, type_code: str, *, progress: Any = None) -> Tally:
    """Issue, re-issue and revoke a type's licences from the changes of its source."""
    tally = Tally()
    with factory.begin() as session:
        kind = get_type(session, type_code)
        if kind.source is None:
            raise Invalid(f"{type_code} has no source resource to follow", field="source")
        issuer = kind.issuer
        actor = Principal.system(on_behalf_of=issuer.code)
        resource = catalog.get_resource(session, kind.source)
        plan = authorize(session, actor, policies.READ, resource=catalog.data_resource(
            session, resource), purpose=PURPOSE)  # fmt: skip
        changes = lake.follow_changes(
            plan, secret=reader_secret(session), since=kind.source_version
        )
        keys = list(plan.resource.primary_key)
        audit.record_read(session, actor, policies.READ, target=kind.source, target_type="resource",
                          count=changes.rows.num_rows, purpose=PURPOSE)  # fmt: skip
    rows = changes.rows
    tally.read = rows.num_rows
    seen: set[str] = set()
    for start in range(0, rows.num_rows, BATCH):
        batch = rows.slice(start, BATCH)
        with factory.begin() as session:
            _apply(session, type_code, batch, keys, changes.version, tally, seen)
        if progress is not None:
            progress(min(start + BATCH, rows.num_rows), rows.num_rows, f"{type_code}")
    with factory.begin() as session:
        kind = _locked_type(session, type_code)
        if changes.complete:
            _revoke_missing(session, kind, seen, tally)
        kind.source_version = changes.version
        audit.record(session, Principal.system(on_behalf_of=kind.issuer.code), "licence.issue",
                     target=type_code, target_type="licence-type", count=tally.issued + tally.reissued,
                     detail=json.dumps({"version": changes.version, **tally.as_dict()}))  # fmt: skip
    return tally


def _apply(
    session: Session,
    type_code: str,
    batch: pa.Table,
    keys: list[str],
    version: int,
    tally: Tally,
    seen: set[str],
) -> None:
    # The type's row lock makes concurrent runs take turns batch by batch: each reads the
    # current licences after the other's batch committed, so a row is never issued twice.
    kind = _locked_type(session, type_code)
    source_keys = _key_texts(batch, keys)
    seen.update(source_keys)
    gone = _gone(batch, kind)
    current = {
        lic.source_key: lic
        for lic in session.scalars(
            select(Licence).where(
                Licence.type_id == kind.id,
                Licence.source_key.in_(source_keys),
                Licence.status.in_(CURRENT),
            )
        )
    }
    wanted = [n for n in parse_schema(kind.schema).names if n in batch.column_names]
    records = batch.select(wanted).to_pylist()
    to_issue: list[tuple[str, dict[str, Any], str, Licence | None]] = []
    for key, record, is_gone in zip(source_keys, records, gone, strict=True):
        live = current.get(key)
        if is_gone:
            if live is not None:
                _end(live, LicenceStatus.REVOKED, "the source row was deregistered or removed")
                _set_status_later(session, kind, live)
                tally.revoked += 1
            continue
        data = {k: _json_value(v) for k, v in record.items()}
        digest = _digest(data)
        if live is not None and live.digest == digest:
            tally.unchanged += 1
            continue
        to_issue.append((key, data, digest, live))
    if not to_issue:
        return
    first = _allocate(session, kind.issuer_id, len(to_issue))
    signer = signer_for(session, kind.issuer)
    rows: list[dict[str, Any]] = []
    for offset, (key, data, digest, live) in enumerate(to_issue):
        row = _new_licence(session, kind, signer, key, data, digest, first + offset, version)
        if live is not None:
            _end(live, LicenceStatus.SUPERSEDED, "re-issued after its source row changed")
            live.replaced_by = row["id"]
            _set_status_later(session, kind, live)
            tally.reissued += 1
        else:
            tally.issued += 1
        rows.append(row)
    _flush_statuses(session, kind)
    try:
        # The superseded ones leave the current set before their successors enter it.
        session.flush()
        session.execute(insert(Licence), rows)
    except IntegrityError as exc:
        raise Conflict(f"another issuance of {type_code} ran at the same time; run again") from exc


def _gone(batch: pa.Table, kind: LicenceType) -> list[bool]:
    flags = batch.column("_gone").combine_chunks()
    for name, values in ((kind.validity or {}).get("revoke_when") or {}).items():
        if name in batch.column_names:
            hit = pc.is_in(
                batch.column(name).cast(pa.string()),
                pa.array([str(v) for v in values], pa.string()),
            )
            flags = pc.or_(flags, pc.fill_null(hit, False))
    return [bool(v) for v in flags.to_pylist()]


def _key_texts(batch: pa.Table, keys: list[str]) -> list[str]:
    columns = [batch.column(k).cast(pa.string()).to_pylist() for k in keys]
    return [
        "\x1f".join("" if v is None else str(v) for v in values)
        for values in zip(*columns, strict=False)
    ]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return vc.iso(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, time):
        return value.isoformat()
    return value


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _end(licence: Licence, status: LicenceStatus, reason: str) -> None:
    licence.status = status
    licence.ended_at = clock.now()
    licence.end_reason = reason


def _set_status_later(session: Session, kind: LicenceType, licence: Licence) -> None:
    pending: list[int] = session.info.setdefault(("licence-revoked", kind.issuer_id), [])
    pending.append(licence.status_index)


def _flush_statuses(session: Session, kind: LicenceType) -> None:
    pending = session.info.pop(("licence-revoked", kind.issuer_id), [])
    if not pending:
        return
    item = _status_list(session, kind.issuer_id, "revocation", lock=True)
    bits = item.bits
    for index in pending:
        bits = vc.set_bit(bits, index, True)
    item.bits = bits
    item.updated_at = clock.now()


def _validity(
    kind: LicenceType, data: Mapping[str, Any], now: datetime
) -> tuple[datetime, datetime | None]:
    rules = kind.validity or {}
    start = _as_time(data.get(rules["valid_from"])) if rules.get("valid_from") else None
    start = start or now
    end = _as_time(data.get(rules["valid_until"])) if rules.get("valid_until") else None
    if end is None and rules.get("years"):
        end = start.replace(year=start.year + int(rules["years"])) if not (
            start.month == 2 and start.day == 29) else start + timedelta(days=365 * int(rules["years"]))  # fmt: skip
    return start, end


def _as_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _new_licence(
    session: Session,
    kind: LicenceType,
    signer: vc.Signer,
    key: str,
    data: dict[str, Any],
    digest: str,
    index: int,
    version: int | None,
) -> dict[str, Any]:
    """A new licence's row: its signed credential, number, holder and validity."""
    now = clock.now()
    licence_id = str(uuid.uuid4())
    start, end = _validity(kind, data, now)
    number = str(data.get(kind.number_field) or "") if kind.number_field else ""
    number = number or f"{kind.code}-{key.replace(chr(31), '-')}"
    holder = str(data.get(kind.holder_field) or "")
    credential = _credential(session, kind, licence_id, number, data, start, end, index, now)
    name = str(data.get(kind.holder_name_field) or "") if kind.holder_name_field else ""
    return dict(
        id=licence_id, type_id=kind.id, holder_id=holder, holder_name=name or None,
        number=number[:100], source_key=key[:200], digest=digest, data=data,
        status=str(LicenceStatus.LIVE), status_index=index, kid=signer.kid.split("#")[-1],
        credential=signer.sign(credential), valid_from=start, valid_until=end, issued_at=now,
        source_version=version, ended_at=None, end_reason=None, replaced_by=None,
    )  # fmt: skip


def _credential(
    session: Session,
    kind: LicenceType,
    licence_id: str,
    number: str,
    data: Mapping[str, Any],
    start: datetime,
    end: datetime | None,
    index: int,
    now: datetime,
) -> dict[str, Any]:
    issuer = kind.issuer
    urls = {p: list_url(session, issuer, p) for p in vc.PURPOSES}
    subject_kind = "ric" if kind.holder_kind == HolderKind.PERSON else "uscc"
    document: dict[str, Any] = {
        "@context": [vc.VC_CONTEXT],
        "id": f"urn:uuid:{licence_id}",
        "type": ["VerifiableCredential", "ElectronicLicence"],
        "name": kind.name,
        "issuer": {"id": did_of(session, issuer), "name": issuer.name},
        "validFrom": vc.iso(start),
        "credentialSubject": {
            "id": f"urn:cn-{subject_kind}:{data.get(kind.holder_field)}",
            "licenceType": kind.code,
            "licenceNumber": number,
            **{k: v for k, v in data.items() if v is not None},
        },
        "credentialStatus": vc.status_entries(urls, index),
        "iat": int(now.timestamp()),
    }
    if end is not None:
        document["validUntil"] = vc.iso(end)
    return document


def _revoke_missing(session: Session, kind: LicenceType, seen: set[str], tally: Tally) -> None:
    """After a whole-table read: the live licences whose source row is no longer there."""
    live = session.scalars(
        select(Licence).where(Licence.type_id == kind.id, Licence.status.in_(CURRENT))
    ).all()
    for licence in live:
        if licence.source_key not in seen:
            _end(licence, LicenceStatus.REVOKED, "the source row was removed")
            _set_status_later(session, kind, licence)
            tally.revoked += 1
    _flush_statuses(session, kind)


# --- the issuer's hand ----------------------------------------------------------------------


def change_status(
    session: Session, actor: Principal, licence_id: str, *, to: str, reason: str
) -> Licence:
    """Revoke, suspend or reinstate a licence (its issuer's stewards or an admin)."""
    licence = _get(session, licence_id)
    if not policies.manages(actor, licence.type.issuer_id):
        raise NotFound(f"no licence {licence_id}")
    if not reason.strip():
        raise Invalid("give a reason", field="reason")
    before = licence.status
    moves = {
        "revoked": (LicenceStatus.LIVE, LicenceStatus.SUSPENDED),
        "suspended": (LicenceStatus.LIVE,),
        "live": (LicenceStatus.SUSPENDED,),
    }
    if to not in moves:
        raise Invalid(f"a licence cannot be set to {to!r}", field="status")
    if before not in moves[to]:
        raise Conflict(f"licence {licence_id} is {before}; it cannot become {to}")
    issuer = licence.type.issuer_id
    if to == "revoked":
        _end(licence, LicenceStatus.REVOKED, reason)
        _set_status(session, issuer, "revocation", licence.status_index, True)
    else:
        licence.status = to
        _set_status(session, issuer, "suspension", licence.status_index, to == "suspended")
    action = {"revoked": "revoke", "suspended": "suspend"}.get(to, "reinstate")
    audit.record(session, actor, f"licence.{action}",
                 target=licence_id, target_type="licence",
                 detail=json.dumps({"before": before, "after": to, "reason": reason},
                                   ensure_ascii=False))  # fmt: skip
    return licence


def _get(session: Session, licence_id: str) -> Licence:
    found = session.get(Licence, licence_id) if len(licence_id) <= 40 else None
    if found is None:
        raise NotFound(f"no licence {licence_id}")
    return found


# --- holders --------------------------------------------------------------------------------


def holder_id(session: Session, actor: Principal) -> str | None:
    """The identity number or credit code a citizen's or enterprise's account is real-named by."""
    if actor.kind != "user" or actor.user_id is None:
        return None
    user = session.get(User, actor.user_id)
    if user is None:
        return None
    if user.kind == AccountKind.CITIZEN:
        return user.ric
    if user.kind == AccountKind.ENTERPRISE:
        return user.uscc
    return None


def my_licences(session: Session, actor: Principal) -> list[Licence]:
    """The signed-in holder's licences, current first."""
    holder = holder_id(session, actor)
    if holder is None:
        raise _refused(actor, "licence.read",
                       "licences are shown to their holders: sign in as a citizen or enterprise")  # fmt: skip
    found = _licences_of(session, holder)
    audit.record_read(session, actor, "licence.read", target=holder, target_type="holder",
                      count=len(found), purpose="holder's own licences")  # fmt: skip
    return found


def _licences_of(session: Session, holder: str) -> list[Licence]:
    return list(
        session.scalars(
            select(Licence)
            .where(Licence.holder_id == holder)
            .order_by(Licence.status.in_(CURRENT).desc(), Licence.issued_at.desc())
            .limit(500)
        )
    )


def access_licence(session: Session, actor: Principal, licence_id: str) -> Licence:
    """The licence for its holder, its issuer's stewards or an admin; NotFound for anyone else."""
    licence = _get(session, licence_id)
    # Same error for missing and not yours: don't reveal that someone holds a licence.
    if holder_id(session, actor) != licence.holder_id and not policies.manages(
        actor, licence.type.issuer_id
    ):
        raise NotFound(f"no licence {licence_id}")
    audit.record_read(session, actor, "licence.read", target=licence_id, target_type="licence",
                      count=1, purpose="licence view")  # fmt: skip
    return licence


@dataclass(frozen=True)
class UseSeen:
    """One use of a licence as its holder sees it: when, how, who, why."""

    at: datetime
    kind: str  # fetch (a department, by grant) or verify
    actor: str
    purpose: str | None
    department: str | None  # the name of the department that looked, if one did


def uses_of(session: Session, licence: Licence) -> list[UseSeen]:
    """Who fetched or verified a licence, newest first, by department name where a department
    looked (the holder sees who looked)."""
    rows = session.execute(
        select(LicenceUse, Organization.name)
        .outerjoin(Organization, Organization.id == LicenceUse.organization_id)
        .where(LicenceUse.licence_id == licence.id)
        .order_by(LicenceUse.at.desc(), LicenceUse.id.desc())
        .limit(100)
    ).all()
    return [UseSeen(u.at, u.kind, u.actor, u.purpose, name) for u, name in rows]


def holder_licences(
    session: Session, actor: Principal, holder: str, *, purpose: str
) -> list[tuple[Licence, bool]]:
    """A holder's current licences for a department with a grant on their types' resources.

    Each comes with whether its credential is given: only when the reader's plan shows every
    field of the licence in clear; otherwise the fields the plan shows. Audited; the holder
    sees the department among those who looked.
    """
    if policies.audience(actor) != "internal":
        raise _refused(actor, "licence.fetch", "departments fetch licences; holders see their own",
                       target=holder)  # fmt: skip
    if not purpose.strip():
        raise Invalid("give the purpose", field="purpose")
    found: list[tuple[Licence, bool]] = []
    plans: dict[int, tuple[bool, frozenset[str]] | None] = {}
    for licence in _licences_of(session, holder):
        if licence.status not in CURRENT:
            continue
        if licence.type_id not in plans:
            plans[licence.type_id] = _reader_plan(session, actor, licence.type)
        plan = plans[licence.type_id]
        if plan is None:
            continue
        whole, clear = plan
        if not whole:
            licence = _narrowed(licence, clear)
        found.append((licence, whole))
    for licence, _whole in found:
        session.add(LicenceUse(licence_id=licence.id, type_id=licence.type_id,
                               organization_id=actor.organization_id, actor=actor.label,
                               kind="fetch", purpose=purpose))  # fmt: skip
    audit.record(session, actor, "licence.fetch", target=holder, target_type="holder",
                 keys=[lic.id for lic, _ in found][:100], count=len(found), purpose=purpose)  # fmt: skip
    return found


def _reader_plan(
    session: Session, actor: Principal, kind: LicenceType
) -> tuple[bool, frozenset[str]] | None:
    if kind.source is None:
        return None
    resource = catalog.find_resource(session, kind.source)
    if resource is None:
        return None
    data = catalog.data_resource(session, resource)
    verdict = policies.evaluate(session, actor, policies.READ, data)
    if verdict is None:
        return None
    plan = policies.plan_for(actor, policies.READ, data, verdict, purpose="licence fetch")
    fields = set(parse_schema(kind.schema).names)
    return fields <= plan.clear, frozenset(plan.clear & fields)


def _narrowed(licence: Licence, clear: frozenset[str]) -> Licence:
    shown = Licence(**{c.key: getattr(licence, c.key) for c in Licence.__table__.columns})
    shown.data = {k: v for k, v in licence.data.items() if k in clear}
    shown.credential = ""
    shown.type = licence.type
    return shown


# --- verifying ----------------------------------------------------------------------------


def trusted_keys(session: Session) -> dict[str, vc.TrustedKey]:
    """Every issuer key of this node by its DID URL, retired ones marked so."""
    rows = session.execute(select(IssuerKey, Organization).join(
        Organization, Organization.id == IssuerKey.organization_id)).all()  # fmt: skip
    return {
        f"{did_of(session, org)}#{key.kid}": vc.TrustedKey(
            key.public_jwk, key.status, key.rotated_at
        )
        for key, org in rows
    }


def verifier(session: Session) -> vc.Verifier:
    """The node's verifier: its issuers' keys and status lists read in this session."""
    base = settings_of(session).base_url + "/licences/status/"

    def fetch(url: str) -> str | None:
        if not url.startswith(base):
            return None
        org_code, _, purpose = url.removeprefix(base).partition("/")
        try:
            return status_list_token(session, org_code, purpose)
        except NotFound:
            return None

    return vc.Verifier(trusted_keys(session), fetch=fetch, clock=clock.now)


def trust_bundle(session: Session) -> dict[str, Any]:
    """What an offline verifier needs: every issuer's DID document and signed status lists."""
    issuers: list[dict[str, Any]] = []
    lists: dict[str, str] = {}
    org_ids = session.scalars(select(IssuerKey.organization_id).distinct()).all()
    for org in session.scalars(select(Organization).where(Organization.id.in_(org_ids))):
        try:
            issuers.append(did_document(session, org.code))
        except NotFound:
            continue
        for purpose in vc.PURPOSES:
            try:
                lists[list_url(session, org, purpose)] = status_list_token(
                    session, org.code, purpose
                )
            except NotFound:
                continue
    return {"issuers": issuers, "status_lists": lists, "ttl": int(vc.STATUS_TTL.total_seconds())}


def verify(session: Session, actor: Principal, payload: str) -> vc.Verification:
    """Check a credential or QR payload: valid, revoked, suspended, expired, forged, unknown."""
    text = payload.strip()
    if not text or len(text) > 20_000:
        raise Invalid("give a credential or the text of its QR code", field="credential")
    result = verifier(session).verify(text)
    licence_id = _licence_id(result.credential)
    licence = session.get(Licence, licence_id) if licence_id else None
    if licence is not None and result.outcome is not vc.Outcome.FORGED:
        session.add(LicenceUse(licence_id=licence.id, type_id=licence.type_id,
                               organization_id=actor.organization_id, actor=actor.label,
                               kind="verify"))  # fmt: skip
    audit.record(session, actor, "licence.verify", target=licence_id, target_type="licence",
                 detail=json.dumps({"outcome": str(result.outcome), "reason": result.reason}))  # fmt: skip
    return result


def _licence_id(credential: Mapping[str, Any] | None) -> str | None:
    if not credential:
        return None
    found = str(credential.get("id", ""))
    return found.removeprefix("urn:uuid:")[:40] if found.startswith("urn:uuid:") else None


def render(licence: Licence) -> str:
    """The licence's rendered view from its type's template (sandboxed, escaped)."""
    try:
        return _templates.from_string(licence.type.template or "").render(**licence.data)
    except TemplateError:
        return ""


def state_of(licence: Licence, now: datetime | None = None) -> str:
    """live / suspended / revoked / superseded, or expired for a live one past its end."""
    moment = now or clock.now()
    if (
        licence.status == LicenceStatus.LIVE
        and licence.valid_until
        and licence.valid_until < moment
    ):
        return "expired"
    return licence.status


# --- statistics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeStats:
    code: str
    name: str
    issuer: str
    issued: int
    live: int
    revoked: int
    uses: int
    issuer_code: str = ""


@dataclass(frozen=True)
class IssuerStats:
    issuer_code: str
    issuer: str
    types: int
    issued: int
    live: int
    revoked: int
    uses: int


def statistics(session: Session, actor: Principal) -> list[TypeStats]:
    """Issued, live, revoked and uses per type (the seed's 'generated / shared' counts);
    civil servants only."""
    if policies.audience(actor) != "internal":
        raise _refused(actor, "licence.statistics", "licence statistics are for civil servants")
    counts = dict(
        ((t, s), n)
        for t, s, n in session.execute(
            select(Licence.type_id, Licence.status, func.count()).group_by(
                Licence.type_id, Licence.status
            )
        )
    )
    uses = dict(
        session.execute(select(LicenceUse.type_id, func.count()).group_by(LicenceUse.type_id)).all()
    )
    out = []
    for kind in list_types(session):
        by = {s: counts.get((kind.id, s), 0) for s in LicenceStatus}
        out.append(
            TypeStats(
                kind.code,
                kind.name,
                kind.issuer.name,
                sum(by.values()),
                by[LicenceStatus.LIVE] + by[LicenceStatus.SUSPENDED],
                by[LicenceStatus.REVOKED],
                int(uses.get(kind.id, 0)),
                kind.issuer.code,
            )
        )
    return out


def issuer_statistics(stats: Sequence[TypeStats]) -> list[IssuerStats]:
    """The per-type counts summed per issuing department, most issued first."""
    groups: dict[str, list[TypeStats]] = {}
    for row in stats:
        groups.setdefault(row.issuer_code, []).append(row)
    out = [
        IssuerStats(code, rows[0].issuer, len(rows), sum(r.issued for r in rows),
                    sum(r.live for r in rows), sum(r.revoked for r in rows),
                    sum(r.uses for r in rows))
        for code, rows in groups.items()
    ]  # fmt: skip
    return sorted(out, key=lambda r: (-r.issued, r.issuer_code))


def find_licences(session: Session, actor: Principal, holder: str) -> list[Licence]:
    """A holder's licences for the CLI and an admin (minyun itself or administrators only)."""
    if not (actor.kind == "system" or "admin" in actor.roles):
        raise _refused(actor, "licence.read", "only administrators list another holder's licences",
                       target=holder)  # fmt: skip
    found = _licences_of(session, holder)
    audit.record_read(session, actor, "licence.read", target=holder, target_type="holder",
                      count=len(found), purpose="administration")  # fmt: skip
    return found


def licences_of_type(session: Session, kind: LicenceType, *, limit: int = 50) -> Sequence[Licence]:
    return session.scalars(
        select(Licence)
        .where(Licence.type_id == kind.id)
        .order_by(Licence.issued_at.desc())
        .limit(limit)
    ).all()
