"""The administration console's pages: organisations, accounts and API clients.

Each change calls the same service function as the CLI and the API. A form that the service
refuses comes back with what was typed and the reason next to the field; the refused change
is rolled back to a savepoint, so nothing of it is kept. Whoever is not an administrator is
refused (403) by the authorisation point, and the refusal is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.admin import manage
from minyun.core.errors import Conflict, DomainError, Invalid, NotFound
from minyun.core.security import Principal, new_secret
from minyun.orgs import service as orgs
from minyun.web.deps import CsrfDep, IdPath, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import PageActorDep, gettext_for, render

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=2000)]
Many = Annotated[list[str], Form()]

# Why a form was refused, by the service's error code; shown next to the field it names.
FIELD_MESSAGES: dict[str, str] = {
    "org-code": N_(
        "Use 2–32 lower-case letters, digits or hyphens, starting with a letter or digit."
    ),
    "org-name": N_("Enter a name of at most 200 characters."),
    "client-name": N_("Enter a name of at most 200 characters."),
    "invalid-uscc": N_(
        "Not a valid unified social credit code: 18 characters with matching check characters (GB 32100)."
    ),
    "unknown-division": N_("Choose one of the divisions of Fujian."),
    "unknown-parent": N_("Choose an existing organisation."),
    "unknown-organization": N_("Choose an existing organisation."),
    "parent-cycle": N_("An organisation cannot sit under itself or one of its own units."),
    "org-code-taken": N_("Another organisation already has this code."),
    "uscc-taken": N_("This credit code is registered to another organisation."),
    "username-format": N_("3–64 lower-case letters, digits, dots, underscores or hyphens."),
    "username-taken": N_("This username is taken."),
    "password-short": N_("The password needs at least 10 characters."),
    "unknown-role": N_("Choose roles from the list."),
    "roles-staff-only": N_("Only civil servants have roles."),
    "no-organization": N_("Choose the organisation this civil servant works for."),
    "last-admin": N_("The last active administrator cannot lose the role or be disabled."),
    "self-disable": N_("You cannot disable your own account."),
    "no-scope": N_("Choose at least one scope."),
    "unknown-scope": N_("Choose scopes from the list."),
    "client-revoked": N_("A revoked client cannot be given a new secret; create a new client."),
}
NOT_ACCEPTED = N_("This value is not accepted.")

# What each scope lets a client do (a scope missing here is shown by its name).
SCOPE_LABELS: dict[str, str] = {
    "resource.read": N_("Read its own organisation's resource rows"),
    "resource.load": N_("Load data into its own organisation's resources"),
    "resource.rejects.read": N_("Read the rows a load rejected"),
    "resource.quality.read": N_("Read quality reports"),
    "catalog.read": N_("Read the catalog"),
    "resource.create": N_("Create resources"),
    "resource.edit": N_("Edit resources"),
    "resource.publish": N_("Publish resources"),
    "resource.retire": N_("Retire resources"),
    "org.read": N_("Read the organisation directory"),
    "org.manage": N_("Manage organisations"),
    "user.manage": N_("Manage accounts"),
    "client.manage": N_("Manage API clients"),
    "audit.read": N_("Read the audit log"),
    "audit.verify": N_("Verify the audit chain"),
    "jobs.read": N_("Watch jobs"),
    "jobs.submit": N_("Submit and cancel jobs"),
    "demo.load": N_("Load the demo province"),
    "eco.read": N_("Read air quality"),
    "eco.ingest": N_("Ingest monitoring stations' readings"),
    "eco.respond": N_("Respond to air-quality alerts"),
}

# Notices after a change, by the `done` query parameter (fixed texts only: nothing typed).
NOTICES: dict[str, str] = {
    "org-created": N_("The organisation is registered."),
    "org-saved": N_("The organisation is saved."),
    "roles-saved": N_("The roles are saved."),
    "disabled": N_("The account is disabled: it cannot sign in and its sessions have ended."),
    "enabled": N_("The account is enabled."),
    "unlocked": N_("The account may sign in again at once."),
    "revoked": N_("The client is revoked: its secret and its tokens are refused from now on."),
}


def _page(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    gettext = gettext_for(request)
    done = request.query_params.get("done", "")
    notice = gettext(NOTICES[done]) if done in NOTICES else None
    scope_label = {s: gettext(label) for s, label in SCOPE_LABELS.items()}
    return render(
        request, template, status_code=status_code, notice=notice, scope_label=scope_label,
        **context,
    )  # fmt: skip


class Refused(Exception):
    """A form the service refused: the field it names and why, in the visitor's language."""

    def __init__(self, errors: dict[str, str], status: int) -> None:
        super().__init__(errors)
        self.errors = errors
        self.status = status


@contextmanager
def attempt(session: Session, request: Request) -> Iterator[None]:
    """Run one change in a savepoint; a refusal of the input rolls it back and becomes Refused.

    Refusals of the actor (Forbidden, Unauthenticated) pass through: they are error pages,
    audited by the unit of work.
    """
    try:
        with session.begin_nested():
            yield
    except (Invalid, Conflict) as exc:
        raise Refused(_errors(request, exc), 409 if isinstance(exc, Conflict) else 422) from exc


def _errors(request: Request, exc: DomainError) -> dict[str, str]:
    gettext = gettext_for(request)
    field = str(exc.extra.get("field") or "form")
    return {field: gettext(FIELD_MESSAGES.get(exc.code, NOT_ACCEPTED))}


def _see(path: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?done={done}", 303)


def _confirm(
    request: Request,
    texts: tuple[str, str, str],
    back: str,
    action: str,
    *,
    subject: str,
    detail: str,
    password_field: bool = False,
    danger: bool = True,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    """Ask before `action` on what `back` shows; `texts` are question, explanation, button."""
    question, explanation, button = texts
    return _page(request, "admin/confirm.html", status_code=status_code, subject=subject,
                 detail=detail, question=question, explanation=explanation, button=button,
                 action=f"{back}/{action}", back=back, password_field=password_field,
                 danger=danger, errors=errors or {})  # fmt: skip


# --- the console's front page ----------------------------------------------------------------


@router.get("/admin")
def console(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """Counts of organisations, accounts and API clients, with the way to each."""
    return _page(request, "admin/console.html", overview=manage.overview(session, actor))


# --- organisations ---------------------------------------------------------------------------


@router.get("/admin/orgs")
def org_list(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    q: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    """Every organisation, with a way to register one and to edit each."""
    rows = manage.organization_rows(session, actor, q=q.strip())
    return _page(request, "admin/orgs.html", rows=rows, q=q.strip())


@router.get("/admin/orgs/new")
def org_new(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The form to register a department or unit, with division and parent pickers."""
    form = manage.organization_form(session, actor)
    values = {"code": "", "name": "", "uscc": "", "division_code": "", "parent": ""}
    return _page(request, "admin/org_form.html", form=form, values=values, errors={})


def _org_form(
    request: Request,
    session: Session,
    actor: Principal,
    values: dict[str, str],
    refused: Refused,
    code: str | None = None,
) -> HTMLResponse:
    """The organisation's form again, with what was typed and why it was refused."""
    form = manage.organization_form(session, actor, code)
    return _page(request, "admin/org_form.html", status_code=refused.status, form=form,
                 values=values, errors=refused.errors)  # fmt: skip


@router.post("/admin/orgs/new", dependencies=[CsrfDep])
def org_create(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    code: Text = "",
    name: Text = "",
    uscc: Text = "",
    division_code: Text = "",
    parent: Text = "",
) -> Response:
    """Register the organisation, or show the form again with the reason next to the field."""
    values = {"code": code.strip(), "name": name, "uscc": uscc.strip().upper(),
              "division_code": division_code, "parent": parent}  # fmt: skip
    try:
        with attempt(session, request):
            orgs.create_organization(
                session, actor, code=values["code"], name=name, uscc=values["uscc"],
                division_code=division_code, parent=parent or None,
            )  # fmt: skip
    except Refused as refused:
        return _org_form(request, session, actor, values, refused)
    return _see("/admin/orgs", "org-created")


@router.get("/admin/orgs/{code}/edit")
def org_edit(request: Request, code: str, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The form to change an organisation (its code stays)."""
    form = manage.organization_form(session, actor, code)
    org = form.organization
    if org is None:  # organization_form found it or raised NotFound
        raise RuntimeError("organization_form returned no organisation")
    values = {"code": org.code, "name": org.name, "uscc": org.uscc,
              "division_code": org.division_code,
              "parent": form.parent.code if form.parent else ""}  # fmt: skip
    return _page(request, "admin/org_form.html", form=form, values=values, errors={})


@router.post("/admin/orgs/{code}/edit", dependencies=[CsrfDep])
def org_update(
    request: Request,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    name: Text = "",
    uscc: Text = "",
    division_code: Text = "",
    parent: Text = "",
) -> Response:
    """Save the organisation, or show the form again with the reason next to the field."""
    values = {"code": code, "name": name, "uscc": uscc.strip().upper(),
              "division_code": division_code, "parent": parent}  # fmt: skip
    try:
        with attempt(session, request):
            orgs.update_organization(
                session, actor, code, name=name, uscc=values["uscc"],
                division_code=division_code, parent=parent or None, clear_parent=not parent,
            )  # fmt: skip
    except Refused as refused:
        return _org_form(request, session, actor, values, refused, code)
    return _see("/admin/orgs", "org-saved")


# --- accounts --------------------------------------------------------------------------------


@router.get("/admin/users")
def user_list(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
    q: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """Accounts with organisation, roles, state and sign-in lock."""
    rows = accounts.list_users(session, actor, q=q.strip() or None, throttle=platform.throttle)
    return _page(request, "admin/users.html", rows=rows, q=q.strip())


@router.get("/admin/users/new")
def user_new(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The form to create a civil servant's account."""
    values: dict[str, Any] = {"username": "", "display_name": "", "organization": "", "roles": []}
    form = manage.user_form(session, actor)
    return _page(request, "admin/user_form.html", form=form, values=values, errors={})


@router.post("/admin/users/new", dependencies=[CsrfDep])
def user_create(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    username: Text = "",
    display_name: Text = "",
    organization: Text = "",
    roles: Many = [],  # noqa: B006 - FastAPI copies form defaults
    password: Text = "",
) -> Response:
    """Create the account; a password left empty is generated and shown once."""
    values: dict[str, Any] = {"username": username.strip(), "display_name": display_name,
                              "organization": organization, "roles": roles}  # fmt: skip
    chosen = password or new_secret(12)
    try:
        with attempt(session, request):
            org = orgs.find_organization(session, organization) if organization else None
            user = accounts.create_user(
                session, actor, username=values["username"],
                display_name=display_name.strip() or values["username"], password=chosen,
                organization_id=org.id if org else None, roles=roles,
            )  # fmt: skip
    except Refused as refused:
        form = manage.user_form(session, actor)
        return _page(request, "admin/user_form.html", status_code=refused.status, form=form,
                     values=values, errors=refused.errors)  # fmt: skip
    return _page(request, "admin/password.html", status_code=201, user=user,
                 password=None if password else chosen, created=True)  # fmt: skip


@router.get("/admin/users/{user_id}")
def user_page(
    request: Request, user_id: IdPath, session: SessionDep, actor: PageActorDep,
    platform: PlatformDep,
) -> HTMLResponse:  # fmt: skip
    """One account: roles to change, disable or enable, reset the password, unlock."""
    page = manage.user_page(session, actor, user_id, platform.throttle)
    return _page(request, "admin/user.html", page=page, chosen=page.user.roles, errors={})


@router.post("/admin/users/{user_id}/roles", dependencies=[CsrfDep])
def user_roles(
    request: Request,
    user_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
    roles: Many = [],  # noqa: B006 - FastAPI copies form defaults
) -> Response:
    """Give the account exactly the roles ticked."""
    try:
        with attempt(session, request):
            accounts.set_roles(session, actor, user_id, roles)
    except Refused as refused:
        page = manage.user_page(session, actor, user_id, platform.throttle)
        return _page(request, "admin/user.html", status_code=refused.status, page=page,
                     chosen=roles, errors=refused.errors)  # fmt: skip
    return _see(f"/admin/users/{user_id}", "roles-saved")


USER_ACTIONS: dict[str, tuple[str, str, str]] = {
    # action: (question, explanation, button)
    "disable": (
        N_("Disable this account?"),
        N_("It can no longer sign in, and every browser session it has ends at once. You can enable it again later."),
        N_("Disable"),
    ),
    "enable": (
        N_("Enable this account?"),
        N_("It can sign in again with its password."),
        N_("Enable"),
    ),
    "reset": (
        N_("Reset this account's password?"),
        N_("Every browser session it has ends. Leave the field empty to have a password generated; it is shown once."),
        N_("Reset the password"),
    ),
}  # fmt: skip


@router.get("/admin/users/{user_id}/{action}")
def user_confirm(
    request: Request, user_id: IdPath, action: str, session: SessionDep, actor: PageActorDep,
    platform: PlatformDep,
) -> HTMLResponse:  # fmt: skip
    """Ask before disabling, enabling or resetting an account."""
    page = manage.user_page(session, actor, user_id, platform.throttle)
    if action not in USER_ACTIONS:
        raise NotFound(f"no page {action}")
    return _confirm(request, USER_ACTIONS[action], f"/admin/users/{user_id}", action,
                    subject=page.user.display_name, detail=page.user.username,
                    password_field=action == "reset", danger=action != "enable")  # fmt: skip


def _user_change(
    request: Request, session: SessionDep, actor: PageActorDep, platform: PlatformDep,
    user_id: int, change: Callable[[], object], done: str,
) -> Response:  # fmt: skip
    try:
        with attempt(session, request):
            change()
    except Refused as refused:
        page = manage.user_page(session, actor, user_id, platform.throttle)
        return _page(request, "admin/user.html", status_code=refused.status, page=page,
                     chosen=page.user.roles, errors=refused.errors)  # fmt: skip
    return _see(f"/admin/users/{user_id}", done)


@router.post("/admin/users/{user_id}/disable", dependencies=[CsrfDep])
def user_disable(
    request: Request, user_id: IdPath, session: SessionDep, actor: PageActorDep,
    platform: PlatformDep,
) -> Response:  # fmt: skip
    """Disable the account: no sign-in, its sessions end."""
    return _user_change(
        request, session, actor, platform, user_id,
        lambda: accounts.disable_user(session, actor, user_id), "disabled",
    )  # fmt: skip


@router.post("/admin/users/{user_id}/enable", dependencies=[CsrfDep])
def user_enable(
    request: Request, user_id: IdPath, session: SessionDep, actor: PageActorDep,
    platform: PlatformDep,
) -> Response:  # fmt: skip
    """Let the account sign in again."""
    return _user_change(
        request, session, actor, platform, user_id,
        lambda: accounts.enable_user(session, actor, user_id), "enabled",
    )  # fmt: skip


@router.post("/admin/users/{user_id}/unlock", dependencies=[CsrfDep])
def user_unlock(
    request: Request, user_id: IdPath, session: SessionDep, actor: PageActorDep,
    platform: PlatformDep,
) -> Response:  # fmt: skip
    """Let the account try to sign in again at once."""
    return _user_change(
        request, session, actor, platform, user_id,
        lambda: accounts.unlock_user(session, actor, platform.throttle, user_id), "unlocked",
    )  # fmt: skip


@router.post("/admin/users/{user_id}/reset", dependencies=[CsrfDep])
def user_reset(
    request: Request,
    user_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    password: Text = "",
) -> Response:
    """Give the account a new password: the one typed, else a generated one shown once."""
    try:
        with attempt(session, request):
            chosen = accounts.reset_password(session, actor, user_id, password=password or None)
    except Refused as refused:
        user = accounts.access_user(session, actor, user_id)
        return _confirm(request, USER_ACTIONS["reset"], f"/admin/users/{user_id}", "reset",
                        subject=user.display_name, detail=user.username, password_field=True,
                        status_code=refused.status, errors=refused.errors)  # fmt: skip
    user = accounts.access_user(session, actor, user_id)
    return _page(request, "admin/password.html", user=user,
                 password=None if password else chosen, created=False)  # fmt: skip


# --- API clients -----------------------------------------------------------------------------


@router.get("/admin/clients")
def client_list(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """API clients, active first, with a way to register one."""
    return _page(request, "admin/clients.html", rows=accounts.list_clients(session, actor))


@router.get("/admin/clients/new")
def client_new(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The form to register an API client: name, organisation, scopes."""
    values: dict[str, Any] = {"name": "", "organization": "", "scopes": []}
    form = manage.client_form(session, actor)
    return _page(request, "admin/client_form.html", form=form, values=values, errors={})


@router.post("/admin/clients/new", dependencies=[CsrfDep])
def client_create(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    name: Text = "",
    organization: Text = "",
    scopes: Many = [],  # noqa: B006 - FastAPI copies form defaults
) -> Response:
    """Register the client and show its secret this once (it is kept only as a hash)."""
    values: dict[str, Any] = {"name": name, "organization": organization, "scopes": scopes}
    try:
        with attempt(session, request):
            org = orgs.find_organization(session, organization) if organization else None
            new = accounts.create_client(
                session, actor, organization_id=org.id if org else 0, name=name, scopes=scopes
            )
    except Refused as refused:
        form = manage.client_form(session, actor)
        return _page(request, "admin/client_form.html", status_code=refused.status, form=form,
                     values=values, errors=refused.errors)  # fmt: skip
    row = accounts.access_client(session, actor, new.client.client_id)
    return _page(request, "admin/secret.html", status_code=201, row=row, secret=new.secret,
                 created=True)  # fmt: skip


@router.get("/admin/clients/{client_id}")
def client_page(
    request: Request, client_id: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """One API client: organisation, scopes, state; rotate or revoke it."""
    row = accounts.access_client(session, actor, client_id)
    return _page(request, "admin/client.html", row=row, errors={})


CLIENT_ACTIONS: dict[str, tuple[str, str, str]] = {
    "rotate": (
        N_("Give this client a new secret?"),
        N_("The new secret is shown once. The old secret is refused from now on, so the department's system must be given the new one; tokens already issued stay valid until they expire."),
        N_("Issue a new secret"),
    ),
    "revoke": (
        N_("Revoke this client?"),
        N_("Its secret and every token it holds are refused at once, and it cannot be restored: a department that still needs access gets a new client."),
        N_("Revoke"),
    ),
}  # fmt: skip


@router.get("/admin/clients/{client_id}/{action}")
def client_confirm(
    request: Request, client_id: str, action: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """Ask before rotating or revoking a client."""
    row = accounts.access_client(session, actor, client_id)
    if action not in CLIENT_ACTIONS:
        raise NotFound(f"no page {action}")
    return _confirm(request, CLIENT_ACTIONS[action], f"/admin/clients/{client_id}", action,
                    subject=row.client.name, detail=row.client.client_id)  # fmt: skip


@router.post("/admin/clients/{client_id}/rotate", dependencies=[CsrfDep])
def client_rotate(
    request: Request, client_id: str, session: SessionDep, actor: PageActorDep
) -> Response:
    """Issue a new secret and show it this once."""
    try:
        with attempt(session, request):
            new = accounts.rotate_client(session, actor, client_id)
    except Refused as refused:
        row = accounts.access_client(session, actor, client_id)
        return _page(request, "admin/client.html", status_code=refused.status, row=row,
                     errors=refused.errors)  # fmt: skip
    row = accounts.access_client(session, actor, client_id)
    return _page(request, "admin/secret.html", row=row, secret=new.secret, created=False)


@router.post("/admin/clients/{client_id}/revoke", dependencies=[CsrfDep])
def client_revoke(
    request: Request, client_id: str, session: SessionDep, actor: PageActorDep
) -> Response:
    """Revoke the client: its secret and tokens are refused at once."""
    accounts.revoke_client(session, actor, client_id)
    return _see(f"/admin/clients/{client_id}", "revoked")
