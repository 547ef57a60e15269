"""The administration console's views: organisations, accounts and API clients.

The changes themselves are the services of `orgs` and `accounts` (the same ones the CLI and
the API call); this module only gathers what a page shows, and asks the same authorisation
point first, so a page refuses whoever the change would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import ApiClient, User
from minyun.core.security import Principal, Role, authorize
from minyun.core.throttle import Throttle
from minyun.orgs import service as orgs
from minyun.orgs.models import Organization

ROLES = [str(r) for r in Role]


@dataclass(frozen=True)
class Overview:
    """What the console's front page counts."""

    organizations: int
    users_active: int
    users_disabled: int
    clients_active: int
    clients_revoked: int


def overview(session: Session, actor: Principal) -> Overview:
    """Counts of organisations, accounts and API clients (administrators)."""
    for action in ("org.manage", "user.manage", "client.manage"):
        authorize(session, actor, action, target_type="admin")

    def count(model: type[User] | type[ApiClient], active: bool) -> int:
        query = select(func.count()).select_from(model).where(model.active.is_(active))
        return int(session.scalar(query) or 0)

    return Overview(
        organizations=orgs.count_organizations(session),
        users_active=count(User, True),
        users_disabled=count(User, False),
        clients_active=count(ApiClient, True),
        clients_revoked=count(ApiClient, False),
    )


@dataclass(frozen=True)
class OrgRow:
    organization: Organization
    parent: str | None  # the parent's name


def organization_rows(session: Session, actor: Principal, *, q: str | None) -> list[OrgRow]:
    """Organisations with their parents' names, for the console's list (administrators)."""
    authorize(session, actor, "org.manage", target_type="organization")
    found = orgs.list_organizations(session, actor, q=q or None)
    names = {o.id: o.name for o in found}
    missing = {o.parent_id for o in found if o.parent_id and o.parent_id not in names}
    if missing:
        query = select(Organization.id, Organization.name).where(Organization.id.in_(missing))
        names.update({int(i): str(n) for i, n in session.execute(query)})
    return [OrgRow(o, names.get(o.parent_id) if o.parent_id else None) for o in found]


@dataclass(frozen=True)
class OrgForm:
    """What the organisation form offers: the organisation (when editing) and the pickers."""

    organization: Organization | None
    parent: Organization | None
    divisions: list[orgs.ChoiceGroup]
    parents: list[orgs.ChoiceGroup]


def organization_form(session: Session, actor: Principal, code: str | None = None) -> OrgForm:
    """The pickers of the organisation form, and the organisation to edit (administrators)."""
    authorize(session, actor, "org.manage", target=code, target_type="organization")
    org = orgs.get_organization(session, code) if code else None
    parent = session.get(Organization, org.parent_id) if org and org.parent_id else None
    return OrgForm(
        org,
        parent,
        orgs.division_groups(session, actor),
        orgs.organization_groups(session, actor),
    )


@dataclass(frozen=True)
class UserForm:
    organizations: list[orgs.ChoiceGroup]
    roles: list[str]


def user_form(session: Session, actor: Principal) -> UserForm:
    """The pickers of the new-account form (administrators)."""
    authorize(session, actor, "user.manage", target_type="user")
    return UserForm(orgs.organization_groups(session, actor), ROLES)


@dataclass(frozen=True)
class UserPage:
    """One account as the console shows it, with the roles that may be given."""

    user: User
    organization: Organization | None
    locked: bool
    roles: list[str]


def user_page(session: Session, actor: Principal, user_id: int, throttle: Throttle) -> UserPage:
    """One account with its organisation and sign-in lock (administrators)."""
    user = accounts.access_user(session, actor, user_id)
    org = session.get(Organization, user.organization_id) if user.organization_id else None
    return UserPage(user, org, accounts.is_locked(throttle, user.username), ROLES)


@dataclass(frozen=True)
class ClientForm:
    organizations: list[orgs.ChoiceGroup]
    scopes: list[str]


def client_form(session: Session, actor: Principal) -> ClientForm:
    """The pickers of the new-client form (administrators)."""
    authorize(session, actor, "client.manage", target_type="api-client")
    return ClientForm(orgs.organization_groups(session, actor), accounts.client_scopes())
