"""E-licence pages (电子证照): the holder's wallet, one licence with its QR code, the public
verifier, and the issuers' statistics. Every page calls `minyun.licences.service`, as the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from minyun.core import policies
from minyun.core.errors import Conflict, Invalid
from minyun.licences import credentials as vc
from minyun.licences import service
from minyun.licences.models import Licence
from minyun.web import wording
from minyun.web.deps import CsrfDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import ACTIONS, LABELS, NAV, PageActorDep, render

router = APIRouter(include_in_schema=False)
LicenceId = Annotated[str, Path(max_length=40)]

NAV.append(("/licences", N_("E-licences"), None))
# A licence's states and a verification's outcomes (their own words: "revoked" is the
# sharing grants' label elsewhere).
STATES = {
    "live": N_("Valid"),
    "valid": N_("Valid"),
    "revoked": N_("Revoked"),
    "suspended": N_("Suspended"),
    "superseded": N_("Superseded"),
    "expired": N_("Expired"),
    "forged": N_("Forged or not ours"),
    "unknown": N_("Status unknown"),
}
USES = {"fetch": N_("Fetched by a department"), "verify": N_("Checked by a verifier")}
LABELS.update(
    **{"licences.issue": N_("Licence issuance"), "licence-type": N_("Licence type"),
       "licence": N_("Licence"), "holder": N_("Holder")},
)  # fmt: skip
ACTIONS.update(
    {
        "licence.type.define": N_("Licence type defined"),
        "licence.issue": N_("Licences issued"),
        "licence.revoke": N_("Licence revoked"),
        "licence.suspend": N_("Licence suspended"),
        "licence.reinstate": N_("Licence reinstated"),
        "licence.read": N_("Licences read"),
        "licence.fetch": N_("Licences fetched by grant"),
        "licence.verify": N_("Licence verified"),
        "licence.key.rotate": N_("Issuer key rotated"),
        "licence.key.retire": N_("Issuer key retired"),
    }
)
wording.sentence(r"give a reason", N_("Give a reason."))
wording.sentence(r"give a credential or the text of its QR code",
                 N_("Paste a credential or the text of its QR code."))  # fmt: skip
wording.sentence(r"signature, dates and status check",
                 N_("The signature, the dates and the status all check out."))  # fmt: skip
wording.sentence(r"its issuer revoked it", N_("Its issuer has revoked it."))
wording.sentence(r"its issuer suspended it", N_("Its issuer has suspended it."))
wording.sentence(r"expired on (?P<when>\S+)", N_("It expired on %(when)s."))
wording.sentence(r"the credential is not valid yet", N_("It is not valid yet."))
wording.sentence(r"not a compact JWS credential", N_("This is not a credential of ours."))
wording.sentence(r"not a vc\+jwt credential", N_("This is not a credential of ours."))
wording.sentence(r"the header is not JSON", N_("This is not a credential of ours."))
wording.sentence(r"the signature does not match",
                 N_("The signature does not match: it was changed after signing."))  # fmt: skip
wording.sentence(r"signed by a key no trusted issuer holds",
                 N_("It was signed by a key no issuer of this node holds."))  # fmt: skip
wording.sentence(r"signed by a retired key", N_("It was signed by a key its issuer withdrew."))
wording.sentence(r"the key does not sign with (?P<alg>\S+)",
                 N_("It was signed with %(alg)s, which its issuer's key does not use."))  # fmt: skip
wording.sentence(r"the status list (?P<url>\S+) cannot be fetched",
                 N_("Its status list cannot be fetched: its status is unknown."))  # fmt: skip
wording.sentence(r"licence (?P<id>\S+) is (?P<now>\w+); it cannot become (?P<to>\w+)",
                 N_("This licence is %(now)s: it cannot become %(to)s."))  # fmt: skip


def qr_svg(payload: str) -> Markup:
    """The payload as an inline SVG QR code (low error correction: credentials are long)."""
    code = segno.make(payload, error="l", micro=False)
    svg = code.svg_inline(scale=2, border=2, dark="#111", light="#fff", omitsize=True)
    return Markup(svg)


@router.get("/licences", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, actor: PageActorDep) -> Response:
    """The wallet for holders, the statistics for civil servants, the verifier for others."""
    if not actor.authenticated:
        return RedirectResponse("/licences/verify", status_code=303)
    if service.holder_id(session, actor) is not None:
        held = service.my_licences(session, actor)
        return render(
            request,
            "licences/wallet.html",
            licences=held,
            state_of=service.state_of,
            states=STATES,
        )
    stats = service.statistics(session, actor)
    issuers = service.issuer_statistics(stats)
    return render(request, "licences/stats.html", stats=stats, chart=_chart(stats),
                  issuers=issuers, issuer_chart=_chart(issuers),
                  managed=service.managed_issuers(session, actor))  # fmt: skip


def _chart(rows: Sequence[service.TypeStats] | Sequence[service.IssuerStats]) -> dict[str, Any]:
    """One bar chart's data: a category per row (a kind's or a department's name)."""
    return {
        "types": [r.name if isinstance(r, service.TypeStats) else r.issuer for r in rows],
        "issued": [r.issued for r in rows],
        "live": [r.live for r in rows],
        "revoked": [r.revoked for r in rows],
        "uses": [r.uses for r in rows],
    }


@router.get("/licences/verify", response_class=HTMLResponse)
def verify_form(request: Request, actor: PageActorDep) -> Response:
    """The public verifier: paste a credential or the text a scanner read from its QR code."""
    return render(
        request, "licences/verify.html", result=None, payload="", error=None, states=STATES
    )


@router.post("/licences/verify", response_class=HTMLResponse, dependencies=[CsrfDep])
def verify(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    credential: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """Valid, revoked, suspended, expired, forged or unknown, with the reason."""
    try:
        result = service.verify(session, actor, credential)
    except Invalid as exc:
        return render(request, "licences/verify.html", result=None, payload=credential,
                      error=str(exc), status_code=422, states=STATES)  # fmt: skip
    claims = result.credential or vc.peek(credential) or {}
    return render(request, "licences/verify.html", result=result, claims=_claims(claims),
                  payload="", error=None, states=STATES)  # fmt: skip


def _claims(credential: dict[str, Any]) -> dict[str, Any]:
    subject = credential.get("credentialSubject") or {}
    issuer = credential.get("issuer")
    return {
        "name": credential.get("name"),
        "issuer": issuer.get("name") if isinstance(issuer, dict) else issuer,
        "number": subject.get("licenceNumber") if isinstance(subject, dict) else None,
        "valid_from": _time(credential.get("validFrom")),
        "valid_until": _time(credential.get("validUntil")),
    }


def _time(text: Any) -> datetime | None:
    try:
        return vc.parse_iso(str(text)) if text else None
    except ValueError:
        return None


@router.get("/licences/{licence_id}", response_class=HTMLResponse)
def licence(
    request: Request, licence_id: LicenceId, session: SessionDep, actor: PageActorDep
) -> Response:
    """One licence: its rendered view, QR code, download, status and who looked."""
    found = service.access_licence(session, actor, licence_id)
    return _licence_page(request, session, actor, found, error=None)


def _licence_page(
    request: Request, session: Any, actor: Any, found: Licence, *, error: str | None,
    status_code: int = 200,
) -> Response:  # fmt: skip
    holder = service.holder_id(session, actor) == found.holder_id
    uses = (
        service.uses_of(session, found)
        if holder or policies.manages(actor, found.type.issuer_id)
        else []
    )
    return render(
        request, "licences/licence.html", licence=found, state=service.state_of(found),
        view=Markup(service.render(found)),
        qr=qr_svg(found.credential) if found.credential else None, uses=uses,
        may_change=policies.manages(actor, found.type.issuer_id), error=error, states=STATES, use_kinds=USES,
        status_code=status_code,
    )  # fmt: skip


@router.post("/licences/{licence_id}/status", response_class=HTMLResponse, dependencies=[CsrfDep])
def change_status(
    request: Request,
    licence_id: LicenceId,
    session: SessionDep,
    actor: PageActorDep,
    to: Annotated[str, Form(max_length=12)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Revoke, suspend or reinstate (the issuer's stewards); a refusal is shown beside the form."""
    try:
        with session.begin_nested():
            service.change_status(session, actor, licence_id, to=to, reason=reason)
    except (Invalid, Conflict) as exc:
        found = service.access_licence(session, actor, licence_id)
        return _licence_page(request, session, actor, found, error=str(exc), status_code=422)
    return RedirectResponse(f"/licences/{licence_id}", status_code=303)


# --- an issuer's signing keys (the CLI's `licence keys / rotate-key / retire-key`) -------------

OrgCode = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Kid = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
KEY_STATES = {"active": N_("Signing"), "rotated": N_("Rotated"), "retired": N_("Retired")}
wording.sentence(r"key (?P<kid>\S+) is already retired", N_("Key %(kid)s is already retired."))
wording.sentence(
    r"tick the box to confirm the rotation", N_("Tick the box to confirm the rotation.")
)
wording.sentence(r"a key signs with Ed25519 or SM2, not (?P<given>.+)",
                 N_("A key signs with Ed25519 or SM2."))  # fmt: skip


def _keys_page(
    request: Request, session: Any, actor: Any, org_code: str, *, error: str | None = None,
    made: str | None = None, status_code: int = 200,
) -> Response:  # fmt: skip
    keys = service.issuer_keys(session, actor, org_code)
    org = service.issuer_of(session, org_code)
    return render(
        request, "licences/keys.html", org=org, did=service.did_of(session, org), keys=keys,
        kind_of=service.algorithm_of, default=service.next_algorithm(session, keys),
        algorithms=list(vc.KeyAlgorithm), states=KEY_STATES, error=error,
        made=next((k for k in keys if k.kid == made), None), status_code=status_code,
    )  # fmt: skip


@router.get("/licences/keys/{org_code}", response_class=HTMLResponse)
def keys(
    request: Request,
    org_code: OrgCode,
    session: SessionDep,
    actor: PageActorDep,
    made: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """An issuing department's signing keys, with the rotation form (its stewards, admins)."""
    return _keys_page(request, session, actor, org_code, made=made)


@router.post("/licences/keys/{org_code}/rotate", dependencies=[CsrfDep])
def rotate_key(
    request: Request,
    org_code: OrgCode,
    session: SessionDep,
    actor: PageActorDep,
    algorithm: Annotated[str, Form(max_length=16)] = "",
    confirm: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """A new signing key of the chosen kind; the old one stops signing, what it signed verifies."""
    if confirm != "yes":
        error = "tick the box to confirm the rotation"
        return _keys_page(request, session, actor, org_code, error=error, status_code=422)
    try:
        with session.begin_nested():
            made = service.rotate_key(session, actor, org_code, algorithm=algorithm or None)
    except (Invalid, Conflict) as exc:
        return _keys_page(request, session, actor, org_code, error=str(exc), status_code=422)
    return RedirectResponse(f"/licences/keys/{org_code}?made={made.kid}#keys", status_code=303)


def _retire_page(
    request: Request, session: Any, actor: Any, org_code: str, kid: str, *, reason: str = "",
    error: str | None = None, status_code: int = 200,
) -> Response:  # fmt: skip
    key = service.issuer_key(session, actor, org_code, kid)
    return render(
        request, "licences/retire_key.html", org=service.issuer_of(session, org_code),
        key=key, kind=service.algorithm_of(key), states=KEY_STATES, reason=reason, error=error,
        status_code=status_code,
    )  # fmt: skip


@router.get("/licences/keys/{org_code}/{kid}/retire", response_class=HTMLResponse)
def retire_key_form(
    request: Request, org_code: OrgCode, kid: Kid, session: SessionDep, actor: PageActorDep
) -> Response:
    """Ask for a confirmation and the reason before a key is withdrawn."""
    return _retire_page(request, session, actor, org_code, kid)


@router.post("/licences/keys/{org_code}/{kid}/retire", dependencies=[CsrfDep])
def retire_key(
    request: Request,
    org_code: OrgCode,
    kid: Kid,
    session: SessionDep,
    actor: PageActorDep,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Withdraw the key: what it signed is refused from now on; a refusal is shown on the form."""
    try:
        with session.begin_nested():
            service.retire_key(session, actor, org_code, kid, reason=reason)
    except (Invalid, Conflict) as exc:
        return _retire_page(request, session, actor, org_code, kid, reason=reason,
                            error=str(exc), status_code=422)  # fmt: skip
    return RedirectResponse(f"/licences/keys/{org_code}#keys", status_code=303)
