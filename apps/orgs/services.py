"""Writes for tenants, teams, members and API tokens. Keyword-only, atomic, validated."""

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.text import slugify
from django.views.decorators.debug import sensitive_variables

from apps.audit import services as audit
from apps.orgs.models import ApiToken, Membership, Organization, Team
from apps.orgs.permissions import OWNER, ROLES, SCOPE_ADMIN, SCOPE_VALUES, role_can
from apps.orgs.selectors import user_by_email
from spendctl.common.crypto import hash_token, new_token
from spendctl.common.exceptions import Conflict, PermissionDenied

ROLE_VALUES = {r for r, _ in ROLES}


# --- organisations -------------------------------------------------------------------------------------------------


def _free_slug(base: str) -> str:
    base = slugify(base)[:40].strip("-") or "org"
    slug, n = base, 2
    while Organization.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def org_create(
    *, name: str, owner, slug: str | None = None, currency: str = "USD", timezone_name: str = "UTC"
):
    org = Organization(
        name=name.strip(), slug=slug or _free_slug(name), currency=currency, timezone=timezone_name
    )
    org.full_clean()
    try:
        with transaction.atomic():
            org.save()
    except IntegrityError as exc:
        raise ValidationError({"slug": ["An organisation with this slug already exists."]}) from exc
    Membership.objects.create(org=org, user=owner, role=OWNER)
    audit.record(
        org=org,
        action="org.created",
        target=org,
        changes=audit.created({**audit.snapshot(org, ORG_FIELDS), "owner": owner.email}),
    )
    return org


ORG_FIELDS = ("name", "slug", "currency", "timezone")


@transaction.atomic
def org_update(*, org: Organization, name: str, currency: str, timezone_name: str) -> Organization:
    before = audit.snapshot(org, ORG_FIELDS)
    org.name, org.currency, org.timezone = name.strip(), currency, timezone_name
    org.full_clean()
    org.save()
    changes = audit.diff(before, audit.snapshot(org, ORG_FIELDS))
    if changes:
        audit.record(org=org, action="org.updated", target=org, changes=changes)
    return org


@dataclass
class UserResult:
    user: object
    password: str | None  # set only when the user was created here


def user_get_or_create(*, email: str, password: str | None = None) -> UserResult:
    User = get_user_model()
    email = User.objects.normalize_email(email.strip()).lower()
    existing = user_by_email(email)
    if existing:
        return UserResult(existing, None)
    if password is None:
        password = secrets.token_urlsafe(12)
    user = User(username=email[:150], email=email)
    user.set_password(password)
    user.full_clean()
    user.save()
    return UserResult(user, password)


# --- teams ---------------------------------------------------------------------------------------------------------


TEAM_FIELDS = ("name", "description")


def _team_name_taken(*, org, name: str, exclude_pk=None) -> bool:
    qs = Team.objects.for_org(org).filter(name__iexact=name.strip())
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    return qs.exists()


@transaction.atomic
def team_create(*, org, name: str, description: str = "") -> Team:
    if _team_name_taken(org=org, name=name):
        raise ValidationError({"name": ["A team with this name already exists in this organisation."]})
    team = Team(org=org, name=name.strip(), description=description.strip())
    team.full_clean()
    team.save()
    audit.record(
        org=org, action="team.created", target=team, changes=audit.created(audit.snapshot(team, TEAM_FIELDS))
    )
    return team


@transaction.atomic
def team_update(*, team: Team, name: str | None = None, description: str | None = None) -> Team:
    before = audit.snapshot(team, TEAM_FIELDS)
    if name is not None:
        if _team_name_taken(org=team.org, name=name, exclude_pk=team.pk):
            raise ValidationError({"name": ["A team with this name already exists in this organisation."]})
        team.name = name.strip()
    if description is not None:
        team.description = description.strip()
    team.full_clean()
    team.save()
    changes = audit.diff(before, audit.snapshot(team, TEAM_FIELDS))
    if changes:
        audit.record(org=team.org, action="team.updated", target=team, changes=changes)
    return team


@transaction.atomic
def team_delete(*, team: Team) -> None:
    audit.record(
        org=team.org,
        action="team.deleted",
        target=team,
        changes=audit.deleted(audit.snapshot(team, TEAM_FIELDS)),
    )
    team.delete()


# --- members -------------------------------------------------------------------------------------------------------


def _check_role(role: str):
    if role not in ROLE_VALUES:
        raise ValidationError({"role": [f"Choose one of: {', '.join(sorted(ROLE_VALUES))}."]})


def _owners_left(org, *, excluding: Membership) -> int:
    return Membership.objects.for_org(org).filter(role=OWNER).exclude(pk=excluding.pk).count()


@transaction.atomic
def membership_invite(*, org, email: str, role: str, invited_by) -> Membership:
    """Adds a person by e-mail. A new user gets an e-mail with a link to set a password."""
    _check_role(role)
    actor = Membership.objects.for_org(org).get(user=invited_by)
    if role == OWNER and not role_can(actor.role, "manage_owners"):
        raise PermissionDenied("Only an owner can make someone an owner.")
    result = user_get_or_create(email=email)
    if Membership.objects.for_org(org).filter(user=result.user).exists():
        raise ValidationError({"email": ["This person is already a member of this organisation."]})
    membership = Membership.objects.create(org=org, user=result.user, role=role)
    audit.record(
        org=org,
        action="member.invited",
        target=membership,
        target_label=result.user.email,
        changes={"email": [None, result.user.email], "role": [None, role]},
    )
    is_new = result.password is not None
    if is_new:
        result.user.set_unusable_password()
        result.user.save(update_fields=["password"])
    context = {
        "org": org,
        "inviter": invited_by,
        "is_new": is_new,
        "site_url": settings.SITE_URL,
        "uid": urlsafe_base64_encode(force_bytes(result.user.pk)),
        "token": default_token_generator.make_token(result.user),
    }
    transaction.on_commit(
        lambda: send_mail(
            subject=f"You have been added to {org.name} on spendctl",
            message=render_to_string("orgs/email/invite.txt", context),
            from_email=None,
            recipient_list=[result.user.email],
        )
    )
    return membership


@transaction.atomic
def membership_role_set(*, membership: Membership, role: str, actor: Membership) -> Membership:
    _check_role(role)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    touches_owner = OWNER in (role, membership.role)
    if touches_owner and not role_can(actor.role, "manage_owners"):
        raise PermissionDenied("Only an owner can grant or take away the owner role.")
    if membership.role == OWNER and role != OWNER and _owners_left(membership.org, excluding=membership) == 0:
        raise Conflict("An organisation needs at least one owner.", code="last_owner")
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    if before != role:
        audit.record(
            org=membership.org,
            action="member.role_changed",
            target=membership,
            target_label=membership.user.email,
            changes={"role": [before, role]},
        )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Membership) -> None:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == OWNER and not role_can(actor.role, "manage_owners"):
        raise PermissionDenied("Only an owner can remove an owner.")
    if membership.role == OWNER and _owners_left(membership.org, excluding=membership) == 0:
        raise Conflict("An organisation needs at least one owner.", code="last_owner")
    audit.record(
        org=membership.org,
        action="member.removed",
        target=membership,
        target_label=membership.user.email,
        changes={"email": [membership.user.email, None], "role": [membership.role, None]},
    )
    membership.delete()


def membership_invites_accept(*, user) -> int:
    """An invited person chose their first password (the invitation link): each org that invited them records it.
    Returns how many memberships were accepted; 0 when the user already had a password (a plain reset)."""
    memberships = list(Membership.objects.filter(user=user).select_related("org"))
    for membership in memberships:
        audit.record(
            org=membership.org,
            action="member.invite_accepted",
            target=membership,
            target_label=user.email,
            changes={"password": [None, True]},
        )
    return len(memberships)


# --- API tokens ----------------------------------------------------------------------------------------------------


@sensitive_variables("plaintext")
@transaction.atomic
def api_token_create(
    *,
    org,
    name: str,
    scopes: list[str],
    created_by,
    team: Team | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Returns the token row and the plaintext, which is never stored and never shown again."""
    scopes = sorted(set(scopes))
    if not scopes:
        raise ValidationError({"scopes": ["Give the token at least one scope."]})
    unknown = [s for s in scopes if s not in SCOPE_VALUES]
    if unknown:
        raise ValidationError({"scopes": [f"Unknown scope(s): {', '.join(unknown)}."]})
    if team is not None and team.org_id != org.pk:
        raise ValidationError({"team": ["No such team."]})
    if team is not None and SCOPE_ADMIN in scopes:
        raise ValidationError({"scopes": ["A token bound to a team cannot have the admin scope."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["The expiry must be in the future."]})
    plaintext = new_token(settings.API_TOKEN_PREFIX)
    token = ApiToken(
        org=org,
        name=name.strip(),
        team=team,
        scopes=scopes,
        created_by=created_by,
        expires_at=expires_at,
        prefix=plaintext[:12],
        token_hash=hash_token(plaintext),
    )
    token.full_clean()
    token.save()
    audit.record(
        org=org,
        action="token.created",
        target=token,
        changes=audit.created(audit.snapshot(token, TOKEN_FIELDS)),
    )
    return token, plaintext


# What the trail shows of a token: never its hash or plaintext (the prefix identifies it).
TOKEN_FIELDS = ("name", "prefix", "scopes", "team", "expires_at", "revoked_at")


@transaction.atomic
def api_token_rename(*, token: ApiToken, name: str) -> ApiToken:
    before = token.name
    token.name = name.strip()
    token.full_clean()
    token.save(update_fields=["name", "updated_at"])
    if before != token.name:
        audit.record(
            org=token.org, action="token.renamed", target=token, changes={"name": [before, token.name]}
        )
    return token


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
        audit.record(
            org=token.org,
            action="token.revoked",
            target=token,
            changes={"revoked_at": [None, token.revoked_at]},
        )
    return token


def api_token_mark_used(*, token: ApiToken, at) -> None:
    """Record use (callers write at most once a minute per token). An UPDATE without save(): no signals, so the
    org version that caches compare against does not move."""
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=at)
    token.last_used_at = at
